"""The simulated node: a kubelet stand-in that runs pods as processes in network namespaces."""
