"""kubectl-kdoctor: probe a Kubernetes data plane under load."""

__version__ = "0.1.0"
