"""Per-node processes: the node agent and kube-proxy, both inside the node's netns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from hack.localcluster import config, pki
from hack.localcluster.controlplane import api_url, component_kubeconfig
from hack.localcluster.util import run, spawn, stop_component

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def agent_name(node: config.NodeInfo) -> str:
    return f"agent-{node.name}"


def proxy_name(node: config.NodeInfo) -> str:
    return f"kube-proxy-{node.name}"


def start_agent(node: config.NodeInfo, bin_dir: Path, kube_version: str) -> int:
    p = pki.ClusterPKI.paths()
    node.dir.mkdir(parents=True, exist_ok=True)
    client = pki.node_client(node)
    kubeconfig = node.dir / "kubelet.kubeconfig"
    pki.write_kubeconfig(
        kubeconfig, api_url(), p.ca.crt, [(node.name, client, None)], node.name, embed=False
    )
    serving = pki.node_serving(node)
    settings = {
        "node": node.__dict__,
        "node_dir": str(node.dir),
        "bin_dir": str(bin_dir),
        "kube_version": kube_version,
        "created_log": str(config.STATE_DIR / "created-paths"),
        "kubeconfig": str(kubeconfig),
        "serving": [str(serving.crt), str(serving.key)],
        "ca": str(p.ca.crt),
    }
    settings_path = node.dir / "agent.json"
    settings_path.write_text(json.dumps(settings, indent=2))
    env = {
        "PATH": SYSTEM_PATH,
        "PYTHONPATH": str(config.REPO),
        "PYTHONUNBUFFERED": "1",
        "KDOCTOR_CLUSTER_DIR": str(config.STATE_DIR),
        "LANG": "C.UTF-8",
    }
    return spawn(
        agent_name(node),
        [
            str(config.PYTHON),
            "-m",
            "hack.localcluster.node.agent",
            "--settings",
            str(settings_path),
        ],
        group=node.name,
        netns=node.netns,
        env=env,
        cwd=config.REPO,
    )


def proxy_config(node: config.NodeInfo) -> Path:
    p = pki.ClusterPKI.paths()
    kc = component_kubeconfig("kube-proxy", p.kube_proxy, p)
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kc)},
        "hostnameOverride": node.name,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": f"0.0.0.0:{config.KUBE_PROXY_HEALTHZ_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        "mode": config.PROXY_MODE,
        "clusterCIDR": ",".join(
            str(c) for c in [config.POD_CIDR, *([config.POD_CIDR6] if node.dual else [])]
        ),
        "nodePortAddresses": ["primary"],  # the node IP (not the pods' gateway addresses)
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE here; the default -999 cannot be set
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    path = node.dir / "kube-proxy.yaml"
    node.dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_proxy(node: config.NodeInfo, bin_dir: Path) -> int:
    cfg = proxy_config(node)
    return spawn(
        proxy_name(node),
        [str(bin_dir / "kube-proxy"), f"--config={cfg}", "--v=1"],
        group=node.name,
        netns=node.netns,
        env={"PATH": SYSTEM_PATH},
    )


def stop_proxy(node: config.NodeInfo, bin_dir: Path) -> None:
    """Stop kube-proxy AND remove its rules, so the node's Services really stop working."""
    stop_component(proxy_name(node))
    cfg = proxy_config(node)
    run(
        [str(bin_dir / "kube-proxy"), f"--config={cfg}", "--cleanup"],
        netns=node.netns,
        check=False,
        timeout=60,
    )


def signal_agent(node: config.NodeInfo, control: dict[str, bool]) -> None:
    import signal

    from hack.localcluster.util import recorded_pid

    path = node.dir / "control.json"
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    current.update(control)
    path.write_text(json.dumps(current))
    rec = recorded_pid(agent_name(node))
    if rec:
        os.kill(rec[0], signal.SIGUSR1)
