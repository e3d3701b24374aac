"""Which address a request came from: the one place that decides whether to believe X-Forwarded-For.

Both servers hand the application the TCP peer (uvicorn is started with its own
proxy-header handling off, ``serving.run``): a header any client can write never
becomes ``scope["client"]``. Behind reverse proxies the peer is the nearest proxy,
so the client is further left in ``X-Forwarded-For``; only the proxies listed in
``INFERENCEOPS_TRUSTED_PROXIES`` are believed about it. From the peer leftwards,
each hop that is a trusted proxy passes the question on to the address it received
from; the first address that is not a trusted proxy is the client. A hop that is not
an address ends the walk at the last trusted one (junk is never reported as a client).

What the address is used for: the audit log's ``source``. Decisions that grant
something (proxy sign-in's trusted proxies, the loopback-only endpoints) look at the
peer itself. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 32  # a longer chain is not a real proxy path; only its nearest hops are read


class ClientAddress:
    """Resolves the client address of a request from its peer and its X-Forwarded-For headers."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self._networks: tuple[Network, ...] = tuple(ipaddress.ip_network(cidr)
                                                    for cidr in trusted_proxies)

    def is_trusted(self, address: str | None) -> bool:
        """Whether ``address`` (an IP address, maybe [bracketed], no port) is a trusted proxy."""
        parsed = parse_address(address, port=False)
        return parsed is not None and _within(parsed, self._networks)

    def of(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """The client: ``peer``, or what trusted proxies say is behind them (see the module doc)."""
        if not self._networks or not forwarded_for or not self.is_trusted(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = parse_address(hop, port=True)
            if address is None:
                break
            client = str(address)
            if not _within(address, self._networks):
                break
        return client


def parse_address(value: str | None, *, port: bool) -> Address | None:
    """An IPv4/IPv6 address, maybe ``[bracketed]`` (and with ``port``, maybe followed by one, as
    some proxies forward it); None if it is not one.

    An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, from a dual-stack socket) is its IPv4.
    """
    if not value:
        return None
    text = value.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text, _, rest = text[1:].partition("]")
        if rest and not (port and rest[:1] == ":" and rest[1:].isdigit()):
            return None
    elif port and text.count(":") == 1:  # v4:port
        text, _, number = text.partition(":")
        if not number.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)
