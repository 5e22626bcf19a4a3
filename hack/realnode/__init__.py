"""A real Kubernetes node for the local cluster: the kubelet built from Go modules, Debian's
containerd 1.6 + runc + CNI plugins, and the agent image built from Debian packages without
a registry or Docker. Entry point: ``hack/realnode/node`` (``python -m hack.realnode``).
See docs/real-node.md.
"""
