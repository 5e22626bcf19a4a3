"""hack/realnode/node: the real node's command line. See docs/real-node.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hack.localcluster.util import ClusterError
from hack.realnode import image, node


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hack/realnode/node", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build what is missing and join the real node to the cluster")
    d = sub.add_parser("down", help="remove the real node and everything it made")
    d.add_argument("--save-logs", metavar="DIR", help="copy the daemons' and pods' logs here")
    s = sub.add_parser("status", help="state, daemons, timings and memory")
    s.add_argument("--json", action="store_true")
    i = sub.add_parser("images", help="build (or find in the cache) the agent and pause images")
    i.add_argument("--rebuild", action="store_true", help="ignore the cache")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            st = node.up()
            print(st.node.name)
        elif args.cmd == "down":
            node.down(Path(args.save_logs) if args.save_logs else None)
        elif args.cmd == "status":
            info = node.status()
            print(json.dumps(info, indent=2))
            return 0 if info["up"] else 1
        elif args.cmd == "images":
            for img in (image.pause_image(args.rebuild), image.agent_image(args.rebuild)):
                print(json.dumps({"ref": img.ref, "archive": str(img.archive), **img.meta}))
    except ClusterError as exc:
        print(f"hack/realnode/node: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
