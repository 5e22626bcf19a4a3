"""The multus contract, played by the node agent: secondary interfaces from the pod
annotation ``k8s.v1.cni.cncf.io/networks`` and NetworkAttachmentDefinitions, reported in
``k8s.v1.cni.cncf.io/network-status`` the way multus writes it.

* Selection (multus' rules): a comma list ``[ns/]name[@ifname]`` or a JSON list of objects
  ``{"name", "namespace"?, "interface"?, "ips"?, "mac"?}``; the namespace defaults to the
  pod's, the interface to ``net<position>`` (net1, net2, ...). An unknown NAD fails the
  sandbox (FailedCreatePodSandBox, retried) as it does with multus.
* Every attachment is a veth into the node's bridge sec0, whose uplink joins the root
  netns' bridge kdbr1: one L2 network spanning the nodes, whatever the CNI ``type`` says
  (macvlan, ipvlan, bridge... behave alike here: same L2, address from IPAM).
* IPAM from the NAD config (plugin config or the first plugin of a conflist with ``ipam``):
  whereabouts' ``range`` (+ ``range_start``/``range_end``, ``exclude``), host-local's
  ``subnet``/``rangeStart``/``rangeEnd`` or ``ranges`` (one address per range set),
  static ``addresses``, ``gateway``, ``routes`` (non-default ones are installed); the
  selection's ``ips`` win. A NAD without any IPAM range gets an address from 192.168.50.0/24.
  Addresses are unique cluster-wide (one locked file for all nodes, like whereabouts).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.localcluster import config

NETWORKS = "k8s.v1.cni.cncf.io/networks"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"
NAD_PATH = "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}"
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class MultusError(Exception):
    """The pod's network selection cannot be honoured (the sandbox fails, as with multus)."""


@dataclass
class Selection:
    name: str
    namespace: str
    interface: str
    ips: list[str] = field(default_factory=list)
    mac: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_selection(value: str, pod_namespace: str) -> list[Selection]:
    value = value.strip()
    out: list[Selection] = []
    if not value:
        return out
    if value.startswith("["):
        try:
            items = json.loads(value)
        except ValueError as exc:
            raise MultusError(f"parsePodNetworkAnnotation: failed to parse JSON: {exc}") from exc
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict) or not item.get("name"):
                raise MultusError(f"parsePodNetworkAnnotation: invalid element {item!r}")
            ips = item.get("ips") or []
            if isinstance(ips, str):
                ips = [ips]
            out.append(
                Selection(
                    name=item["name"],
                    namespace=item.get("namespace") or pod_namespace,
                    interface=item.get("interface") or f"net{i}",
                    ips=list(ips),
                    mac=item.get("mac"),
                )
            )
    else:
        for i, part in enumerate((p.strip() for p in value.split(",")), 1):
            if not part:
                continue
            ns, _, rest = part.rpartition("/")
            name, _, ifname = rest.partition("@")
            if not name:
                raise MultusError(f"parsePodNetworkAnnotation: invalid network {part!r}")
            out.append(Selection(name, ns or pod_namespace, ifname or f"net{i}"))
    seen: set[str] = set()
    for sel in out:
        if not IFNAME.match(sel.interface) or sel.interface in ("eth0", "lo"):
            raise MultusError(f"invalid interface name {sel.interface!r}")
        if sel.interface in seen:
            raise MultusError(f"duplicate interface name {sel.interface!r}")
        seen.add(sel.interface)
    return out


def plugin_config(nad: dict[str, Any]) -> dict[str, Any]:
    raw = (nad.get("spec") or {}).get("config") or "{}"
    try:
        cfg = json.loads(raw)
    except ValueError as exc:
        raise MultusError(f"network-attachment-definition config is not JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise MultusError("network-attachment-definition config is not a JSON object")
    if "plugins" in cfg:  # a conflist: the plugin that does IPAM
        plugins = [p for p in cfg.get("plugins") or [] if isinstance(p, dict)]
        with_ipam = [p for p in plugins if p.get("ipam")]
        return (with_ipam or plugins or [{}])[0]
    return cfg


@dataclass
class Range:
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    start: int
    end: int
    gateway: str | None = None
    exclude: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)


def _range(
    subnet: str, start: str | None, end: str | None, gw: str | None, excl: list[str]
) -> Range:
    net = ipaddress.ip_network(subnet, strict=False)
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    if start:
        first = int(ipaddress.ip_address(start.split("/")[0]))
    if end:
        last = int(ipaddress.ip_address(end.split("/")[0]))
    return Range(net, first, last, gw, [ipaddress.ip_network(e, strict=False) for e in excl])


def ipam_plan(cfg: dict[str, Any]) -> tuple[list[Range], list[str], list[tuple[str, str | None]]]:
    """-> (ranges to allocate one address from each, static address/prefix list, routes)."""
    ipam = cfg.get("ipam") or {}
    routes = [
        (r["dst"], r.get("gw"))
        for r in ipam.get("routes") or []
        if isinstance(r, dict) and r.get("dst") and ipaddress.ip_network(r["dst"]).prefixlen > 0
    ]
    static = [a["address"] for a in ipam.get("addresses") or [] if a.get("address")]
    ranges: list[Range] = []
    excl = list(ipam.get("exclude") or [])
    if ipam.get("range"):  # whereabouts
        r = str(ipam["range"])
        start = ipam.get("range_start")
        if "-" in r:  # "192.168.2.225-192.168.2.230/28"
            span, _, prefix = r.partition("/")
            start, _, end_ip = span.partition("-")
            ranges.append(_range(f"{start}/{prefix}", start, end_ip, ipam.get("gateway"), excl))
        else:
            ranges.append(_range(r, start, ipam.get("range_end"), ipam.get("gateway"), excl))
    elif ipam.get("subnet"):  # host-local, old style
        ranges.append(
            _range(
                ipam["subnet"],
                ipam.get("rangeStart"),
                ipam.get("rangeEnd"),
                ipam.get("gateway"),
                excl,
            )
        )
    elif ipam.get("ranges"):  # host-local: one address from each range set
        for rset in ipam["ranges"]:
            r0 = rset[0] if isinstance(rset, list) and rset else rset
            if isinstance(r0, dict) and r0.get("subnet"):
                ranges.append(
                    _range(
                        r0["subnet"],
                        r0.get("rangeStart"),
                        r0.get("rangeEnd"),
                        r0.get("gateway"),
                        excl,
                    )
                )
    if not ranges and not static:
        ranges.append(_range(str(config.SECONDARY_POOL), None, None, None, []))
    return ranges, static, routes


class Ipam:
    """Cluster-wide address book of the secondary networks: a JSON file under the state dir
    shared by every node agent, changed under an exclusive lock."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config.STATE_DIR / "multus" / "ipam.json"

    @contextlib.contextmanager
    def _book(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self.path) + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    book: dict[str, Any] = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    book = {}
                yield book
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(book, indent=1, sort_keys=True))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def allocate(
        self, uid: str, node: str, ifname: str, ranges: list[Range], requested: list[str]
    ) -> list[str]:
        """Addresses (with prefix) for pod ``uid``'s ``ifname``: the ``requested`` ones, else
        the lowest free address of each range. Idempotent per (uid, ifname)."""
        owner = f"{uid}/{ifname}"
        with self._book() as book:
            mine = [ip for ip, o in book.items() if o.get("owner") == owner]
            if mine:
                return sorted(mine, key=lambda c: (":" in c, c))
            taken = {str(ipaddress.ip_interface(c).ip) for c in book}
            out: list[str] = []
            for want in requested:
                iface = ipaddress.ip_interface(
                    want if "/" in want else self._with_prefix(want, ranges)
                )
                if str(iface.ip) in taken:
                    raise MultusError(f"requested IP {iface.ip} is already in use")
                out.append(str(iface))
            if not requested:
                for r in ranges:
                    out.append(self._free(r, taken))
            for c in out:
                book[c] = {"owner": owner, "node": node}
            return out

    @staticmethod
    def _with_prefix(ip: str, ranges: list[Range]) -> str:
        addr = ipaddress.ip_address(ip)
        for r in ranges:
            if addr in r.subnet:
                return f"{ip}/{r.subnet.prefixlen}"
        return f"{ip}/{32 if addr.version == 4 else 128}"

    @staticmethod
    def _free(r: Range, taken: set[str]) -> str:
        gw = r.gateway.split("/")[0] if r.gateway else None
        for n in range(r.start, r.end + 1):
            ip = ipaddress.ip_address(n)
            s = str(ip)
            if s in taken or s == gw or any(ip in e for e in r.exclude):
                continue
            return f"{s}/{r.subnet.prefixlen}"
        raise MultusError(f"no free address left in {r.subnet}")

    def release(self, uid: str) -> None:
        with self._book() as book:
            for c in [c for c, o in book.items() if o.get("owner", "").startswith(uid + "/")]:
                del book[c]

    def gc(self, node: str, live_uids: set[str]) -> None:
        """Forget addresses of ``node``'s pods that no longer exist."""
        with self._book() as book:
            for c, o in list(book.items()):
                if o.get("node") == node and o.get("owner", "").split("/")[0] not in live_uids:
                    del book[c]


def status_entry(
    name: str, ifname: str, ips: list[str], mac: str, default: bool = False
) -> dict[str, Any]:
    """One element of network-status, in multus' field order."""
    entry: dict[str, Any] = {"name": name, "interface": ifname, "ips": ips, "mac": mac}
    if default:
        entry["default"] = True
    entry["dns"] = {}
    return entry
