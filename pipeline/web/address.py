"""``web.listen`` addresses: ``HOST:PORT``, ``[::1]:PORT``; and which hosts are loopback."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def parse_listen(value: str) -> tuple[str, int]:
    """(host, port) from ``HOST:PORT``; raises ValueError with an example otherwise."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r}: write HOST:PORT, e.g. 127.0.0.1:8765 (or 0.0.0.0:8765 for every address)")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{value!r}: an IPv6 address goes in brackets, e.g. [::1]:8765")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: an IPv6 address goes in brackets, e.g. [::1]:8765")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r}: the port must be a number, e.g. 127.0.0.1:8765") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: the port must be between 1 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost: only this machine can reach them."""
    host = host.strip().lower().strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` → ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header
