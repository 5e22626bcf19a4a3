"""hack/cluster: the local test cluster's command line. See docs/local-cluster.md."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hack.localcluster import cluster, config, faults
from hack.localcluster.util import ClusterError, netns_prefix


def _state() -> config.ClusterState:
    state = config.ClusterState.load()
    if state is None:
        raise ClusterError("no cluster is running (hack/cluster up)")
    return state


def cmd_up(args: argparse.Namespace) -> int:
    state = cluster.up(args.nodes, args.ip_family)
    print(state.kubeconfig)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    cluster.down(Path(args.save_logs) if args.save_logs else None)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    st = cluster.status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st["running"] else 1
    if "kubeconfig" not in st:
        print(f"no cluster (state dir {st['state_dir']})")
        return 1
    print(f"running:    {st['running']}")
    print(f"kubeconfig: {st['kubeconfig']}")
    print(f"api server: {st['api_server']}")
    print(f"binaries:   {st['bin_dir']}")
    if st["up_seconds"] is not None:
        print(f"up took:    {st['up_seconds']}s")
    print(f"ip family:  {st.get('ip_family', 'ipv4')}")
    for name, c in st["components"].items():
        print(f"  {name:24} pid {c['pid']!s:8} {'healthy' if c['healthy'] else 'NOT HEALTHY'}")
    for name, n in st["nodes"].items():
        print(
            f"  {name:8} {' '.join(n['ips']):31} pods {' '.join(n['pod_cidrs']):34} "
            f"Ready={n['ready']:7} agent={'up' if n['agent'] else 'DOWN'} "
            f"kube-proxy={'up' if n['kube-proxy'] else 'down'}"
        )
    if st.get("addons"):
        a = st["addons"]
        print(
            f"  add-ons: controllers={'up' if a['controllers'] else 'DOWN'} "
            f"ingress-nginx={'up' if a['ingress-nginx'] else 'down'} "
            f"(class {a['ingress_class']} at {', '.join(a['ingress_ips'])}), "
            f"LB pools {', '.join(a['lb_pools'])}"
        )
    active = {k: v for k, v in st["faults"].items() if v}
    print(f"faults:     {json.dumps(active) if active else 'none'}")
    for group, m in st["memory"].items():
        procs = ", ".join(f"{k} {v}" for k, v in m["by_process_mib"].items())
        print(f"memory {group:14} {m['total_mib']:7.1f} MiB PSS  ({procs})")
    return 0 if st["running"] else 1


def cmd_env(args: argparse.Namespace) -> int:
    state = _state()
    print(f"export KUBECONFIG={state.kubeconfig}")
    print(f"export KDOCTOR_CLUSTER_DIR={config.STATE_DIR}")
    print(f"# API server {state.api_server}; cluster DNS {config.DNS_SERVICE_IP};")
    nodes = ", ".join(f"{n.name}={'/'.join(n.ips)}" for n in state.nodes)
    print(f"# nodes: {nodes}")
    if state.addons:
        print(
            f"# ingress: class {config.INGRESS_CLASS} at {config.INGRESS_IP}"
            + (f", {config.INGRESS_IP6}" if state.dual else "")
            + f"; LoadBalancer pools {config.LB_POOL}"
            + (f", {config.LB_POOL6}" if state.dual else "")
        )
    print(f"# CLI user apart from the admin: kubectl --context {config.CLI_CONTEXT} ...")
    print(f"# restricted user: kubectl --context {config.RESTRICTED_CONTEXT} ...")
    print(f"# binaries: {state.bin_dir}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    print(_state().kubeconfig)
    return 0


def cmd_net(args: argparse.Namespace) -> int:
    if args.action == "cut":
        faults.cut_link(args.a, args.b, one_way=args.one_way, family=args.family)
    elif args.action == "heal":
        faults.heal_link(args.a, args.b)
    elif args.action == "loss":
        faults.set_loss(args.node, args.percent)
    elif args.action == "delay":
        faults.set_delay(args.node, args.ms)
    elif args.action == "clear":
        faults.clear_node_net(args.node)
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    if args.action == "stop":
        faults.stop_kube_proxy(args.node)
    else:
        faults.start_kube_proxy(args.node)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    if args.action == "stop":
        faults.stop_ingress_proxy()
    else:
        faults.start_ingress_proxy()
    return 0


def cmd_iface(args: argparse.Namespace) -> int:
    ns, _, pod = args.pod.rpartition("/")
    faults.set_pod_interface(ns or "default", pod, args.iface, args.action == "up")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from hack.localcluster import audit

    since = time.time() - args.last if args.last else None
    counts = audit.request_counts(since=since, users=args.user or None)
    for (user, verb, resource), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:7} {verb:8} {resource:40} {user}")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    {
        "notready": lambda: faults.set_node_ready(args.node, False),
        "ready": lambda: faults.set_node_ready(args.node, True),
        "stop-heartbeat": lambda: faults.set_heartbeat(args.node, False),
        "start-heartbeat": lambda: faults.set_heartbeat(args.node, True),
    }[args.action]()
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    faults.heal_all()
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from hack.localcluster.podexec import exec_in_pod

    ns, _, pod = args.pod.rpartition("/")
    proc = exec_in_pod(
        cluster.admin(), ns or "default", pod, args.cmd, args.container, args.timeout, capture=False
    )
    return proc.returncode


def cmd_nsexec(args: argparse.Namespace) -> int:
    node = _state().node(args.node)
    return subprocess.run([*netns_prefix(node.netns), *args.cmd], check=False).returncode


def cmd_logs(args: argparse.Namespace) -> int:
    path = config.STATE_DIR / "logs" / f"{args.component}.log"
    if not path.exists():
        names = sorted(p.stem for p in (config.STATE_DIR / "logs").glob("*.log"))
        raise ClusterError(f"no log {path}; components: {', '.join(names)}")
    os.execvp("tail", ["tail", "-n", str(args.lines), *(["-f"] if args.follow else []), str(path)])


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="start the cluster (or reuse a running one); prints kubeconfig")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument(
        "--ip-family",
        choices=config.IP_FAMILIES,
        help=f"dual stack or IPv4 only (default for a new cluster: {config.DEFAULT_IP_FAMILY}; "
        "a running cluster is reused only if it matches)",
    )
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop and remove everything the cluster made")
    p.add_argument("--save-logs", metavar="DIR", help="copy component and pod logs here first")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="components, nodes, faults, memory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    sub.add_parser("env", help="shell exports for using the cluster").set_defaults(func=cmd_env)
    sub.add_parser("kubeconfig", help="print the kubeconfig path").set_defaults(func=cmd_kubeconfig)

    p = sub.add_parser("net", help="network faults between/on nodes")
    nsub = p.add_subparsers(dest="action", required=True)
    q = nsub.add_parser("cut", help="drop traffic between two nodes (and their pods)")
    q.add_argument("a")
    q.add_argument("b")
    q.add_argument("--one-way", action="store_true", help="only traffic from A to B")
    q.add_argument(
        "--family", choices=["ipv4", "ipv6"], help="cut only this IP family (default: both)"
    )
    q = nsub.add_parser("heal", help="undo cuts (all, or those involving A [and B])")
    q.add_argument("a", nargs="?")
    q.add_argument("b", nargs="?")
    q = nsub.add_parser("loss", help="drop PERCENT%% of a node's packets (0 clears)")
    q.add_argument("node")
    q.add_argument("percent", type=int)
    q = nsub.add_parser("delay", help="delay a node's packets (needs tc netem)")
    q.add_argument("node")
    q.add_argument("ms", type=int)
    q = nsub.add_parser("clear", help="remove loss and delay of a node")
    q.add_argument("node")
    p.set_defaults(func=cmd_net)

    p = sub.add_parser("proxy", help="stop (and flush) or start a node's kube-proxy")
    p.add_argument("action", choices=["stop", "start"])
    p.add_argument("node")
    p.set_defaults(func=cmd_proxy)
    p = sub.add_parser("ingress", help="stop or start the ingress proxy (nginx)")
    p.add_argument("action", choices=["stop", "start"])
    p.set_defaults(func=cmd_ingress)
    p = sub.add_parser("iface", help="take a pod's (secondary) interface down or up")
    p.add_argument("action", choices=["down", "up"])
    p.add_argument("pod", help="NAMESPACE/POD")
    p.add_argument("iface", nargs="?", default="net1")
    p.set_defaults(func=cmd_iface)
    p = sub.add_parser("audit", help="API request counts from the audit log")
    p.add_argument("--last", type=float, help="only the last SECONDS")
    p.add_argument("--user", action="append", help="only this user (glob; repeatable)")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("node", help="node condition faults")
    p.add_argument("action", choices=["notready", "ready", "stop-heartbeat", "start-heartbeat"])
    p.add_argument("node")
    p.set_defaults(func=cmd_node)
    sub.add_parser("heal", help="undo every fault").set_defaults(func=cmd_heal)

    p = sub.add_parser("exec", help="run a command in a pod's container: exec NS/POD -- CMD")
    p.add_argument("pod", help="NAMESPACE/POD (default namespace if no slash)")
    p.add_argument("-c", "--container")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)
    p = sub.add_parser("nsexec", help="run a command in a node's netns: nsexec NODE -- CMD")
    p.add_argument("node")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_nsexec)
    p = sub.add_parser(
        "logs", help="tail a component's log (etcd, kube-apiserver, agent-node-1...)"
    )
    p.add_argument("component")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    p.set_defaults(func=cmd_logs)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if hasattr(args, "cmd") and isinstance(args.cmd, list) and args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    if os.geteuid() != 0 and args.func not in (cmd_env, cmd_kubeconfig, cmd_status, cmd_audit):
        print("hack/cluster: needs root (network namespaces, nft, cgroups)", file=sys.stderr)
        return 2
    try:
        rc: int = args.func(args)
        return rc
    except (ClusterError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hack/cluster: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
