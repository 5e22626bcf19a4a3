"""Read the system resolver configuration (``/etc/resolv.conf``): the default DNS server
that ``dns --local`` queries when ``--server`` is not given."""

from __future__ import annotations

import ipaddress

RESOLV_CONF = "/etc/resolv.conf"


def nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The ``nameserver`` addresses in file order (IPv6 zone ids kept); [] when unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            addr = fields[1]
            try:
                ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                continue
            out.append(addr)
    return out


def search_domains(path: str = RESOLV_CONF) -> list[str]:
    """The ``search`` (or ``domain``) list, last directive wins as in glibc; [] when none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if fields and fields[0] in ("search", "domain"):
            out = fields[1:]
    return out


def default_nameserver(path: str = RESOLV_CONF) -> str | None:
    """The first nameserver of ``path``, or None when it names none."""
    found = nameservers(path)
    return found[0] if found else None
