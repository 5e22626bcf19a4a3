"""The agent that runs in each pod of a job-mode run (``kubectl-kdoctor agent``): it serves
HTTP(S) for peers, waits for them, runs the load with the engine and writes its report into
the API. Independent of the CLI."""
