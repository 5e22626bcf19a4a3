"""The load engine: open-loop constant-rate HTTP(S) and DNS load with exact, mergeable
latency histograms. Independent of the CLI and of Kubernetes; the agent runs it in pods and
``--local`` runs it in-process."""
