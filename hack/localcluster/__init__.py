"""A real local Kubernetes cluster for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kube-proxy and CoreDNS built from Go modules, plus simulated nodes (network
namespaces with a Python node agent that runs each pod's containers as local processes).

Entry point: ``hack/cluster`` (``python -m hack.localcluster``). See docs/local-cluster.md.
"""
