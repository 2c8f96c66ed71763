"""``web.listen`` addresses (``HOST:PORT``, ``[::1]:PORT``), which hosts are loopback, and who
sent a request: the connection's peer, or the client named by a proxy listed in
``web.trusted_proxies``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers

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


_HOST_HEADER = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.\-]+))(?::[0-9]{1,5})?")


def host_of(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` → ``::1``); '' for anything that is not
    ``host[:port]`` (``localhost:80@elsewhere``, two hosts, a user part), which is then no loopback."""
    found = _HOST_HEADER.fullmatch(header.strip())
    if found is None:
        return ""
    return found.group("ip6") or found.group("name")


# -- who is asking: the connection's peer, or the client a trusted proxy names ---------------

# What a proxy adds when it says so; a proxy that adds none of them (nginx with
# proxy_http_version 1.1 and no proxy_set_header, a TCP tunnel) cannot be told from a program on
# this machine: docs/web.md says to set a password before putting any proxy in front.
FORWARDING_HEADERS = (
    "forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
    "x-forwarded-server", "x-client-ip", "via",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``web.trusted_proxies``: each entry an address or a CIDR block; ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or CIDR block: name the proxy by its address, "
                f"e.g. 127.0.0.1, ::1 or 10.0.0.0/24"
            ) from None
    return tuple(networks)


def ip_of(text: str | None) -> Address | None:
    """The IP address in a peer or forwarded entry (``192.0.2.1``, ``192.0.2.1:80``,
    ``"[2001:db8::1]:4711"``), IPv4-mapped IPv6 as IPv4; None for names, ``unknown`` and the like."""
    if not text:
        return None
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def _forwarded_params(headers: Headers, key: str) -> list[str]:
    """Every ``key=value`` of the RFC 7239 ``Forwarded`` headers, in order (quotes removed)."""
    found = []
    for header in headers.getlist("forwarded"):
        for element in header.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.strip().lower() == key and value.strip():
                    found.append(value.strip().strip('"'))
    return found


def _listed(headers: Headers, name: str) -> list[str]:
    return [part.strip() for header in headers.getlist(name) for part in header.split(",") if part.strip()]


def forwarded_chain(headers: Headers) -> list[str]:
    """The addresses a proxied request came through as its proxies list them, the client first and
    the nearest proxy's client last: ``X-Forwarded-For``, else ``Forwarded: for=``, else ``X-Real-IP``."""
    return _listed(headers, "x-forwarded-for") or _forwarded_params(headers, "for") or _listed(headers, "x-real-ip")[-1:]


@dataclass(frozen=True)
class Client:
    """Who sent a request, as far as this server can tell.

    ``address`` is the connection's peer, or — when the peer is a trusted proxy — the right-most
    address in the proxy's list that is not itself a trusted proxy: the login limit counts by it.
    ``local`` is true only for a direct connection from this machine carrying no forwarding
    header: a proxy on this machine connects from 127.0.0.1 on behalf of anyone, and what it says
    about its client cannot be checked here, so a proxied request is never local. Nor is an
    HTTP/1.0 request: that is what nginx's bare ``proxy_pass`` sends (with no forwarding header
    at all), while browsers and today's tools speak HTTP/1.1.
    ``origin`` and ``https`` are what a trusted proxy says the browser sees (``X-Forwarded-Proto``
    and ``X-Forwarded-Host``, or ``Forwarded: proto= host=``); None and False otherwise.
    """

    address: str
    local: bool
    proxied: bool = False
    origin: str | None = None
    https: bool = False


def client_of(peer: str | None, headers: Headers, trusted: tuple[Network, ...], http_version: str = "1.1") -> Client:
    """The :class:`Client` of a request from ``peer`` (the socket's address) with ``headers``."""
    peer_address = ip_of(peer)
    shown = str(peer_address) if peer_address is not None else (peer or "unknown")
    if not any(name in headers for name in FORWARDING_HEADERS):
        if http_version == "1.0":
            return Client(shown, local=False, proxied=True)
        return Client(shown, local=peer_address is not None and peer_address.is_loopback)
    if peer_address is None or not _within(peer_address, trusted):
        return Client(shown, local=False, proxied=True)  # anyone may write these headers: ignore them
    address = shown
    for entry in reversed(forwarded_chain(headers)):
        hop = ip_of(entry)
        address = str(hop) if hop is not None else entry[:64]
        if hop is None or not _within(hop, trusted):
            break
    real_ip = ip_of((_listed(headers, "x-real-ip") or [""])[-1])
    if real_ip is not None and not _within(real_ip, trusted) and str(real_ip) != address:
        # The proxy set one of X-Real-IP and X-Forwarded-For from the connection and passed the
        # other through from the client, and nothing here says which: a client that forged one
        # must not get a fresh login allowance each time, so all such requests count as one client.
        address = f"inconsistent forwarding via {shown}"
    proto = (_listed(headers, "x-forwarded-proto") or _forwarded_params(headers, "proto") or [""])[0].lower()
    host = (_listed(headers, "x-forwarded-host") or _forwarded_params(headers, "host") or [""])[0].lower()
    origin = f"{proto}://{host}" if proto in ("http", "https") and host else None
    return Client(address, local=False, proxied=True, origin=origin, https=proto == "https")
