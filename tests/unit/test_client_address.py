"""Which client address a request came from: X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from inferenceops.client_address import ClientAddress, parse_address
from inferenceops.settings import Settings

PROXIES = ClientAddress(["10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(("peer", "forwarded", "client"), [
    # No trusted proxy in front: the header is the client's own writing, and ignored.
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
    ("127.0.0.1", ["10.0.0.5"], "127.0.0.1"),
    # The peer is a trusted proxy: the address it received from is the client.
    ("10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", [], "10.0.0.2"),
    # A client that writes its own header in front of the proxy's gets the proxy's word, not its.
    ("10.0.0.2", ["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
    ("10.0.0.2", ["1.2.3.4", "198.51.100.1"], "198.51.100.1"),  # two headers, one list
    # Chains of trusted proxies pass the question on; the first untrusted hop is the client.
    ("10.0.0.2", ["198.51.100.1, 10.9.9.9, 10.0.0.3"], "198.51.100.1"),
    ("10.0.0.2", ["10.0.0.7, 10.0.0.3"], "10.0.0.7"),  # all trusted: the farthest one
    # Junk ends the walk at the last address a trusted proxy vouched for.
    ("10.0.0.2", ["198.51.100.1, unknown"], "10.0.0.2"),
    ("10.0.0.2", ["junk, 10.0.0.3"], "10.0.0.3"),
    ("10.0.0.2", [""], "10.0.0.2"),
    # Ports and brackets, as some proxies forward them; IPv4-mapped IPv6.
    ("10.0.0.2", ["198.51.100.1:5555"], "198.51.100.1"),
    ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("fd00::1", ["2001:db8::1"], "2001:db8::1"),
    ("::ffff:10.0.0.2", ["198.51.100.1"], "198.51.100.1"),
    (None, ["198.51.100.1"], None),
])
def test_the_client_is_the_first_hop_no_trusted_proxy_vouches_for(
        peer: str | None, forwarded: list[str], client: str | None) -> None:
    assert PROXIES.of(peer, forwarded) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientAddress().of("10.0.0.2", ["198.51.100.1"]) == "10.0.0.2"


@pytest.mark.parametrize(("value", "port", "parsed"), [
    ("10.0.0.1", False, "10.0.0.1"), ("[fd00::1]", False, "fd00::1"),
    ("10.0.0.1:80", False, None), ("10.0.0.1:80", True, "10.0.0.1"),
    ("10.0.0.1:http", True, None), ("[fd00::1]:x", True, None), ("[fd00::1]junk", True, None),
    ("::ffff:10.0.0.1", False, "10.0.0.1"), ("", False, None), (None, False, None),
])
def test_parse_address(value: str | None, port: bool, parsed: str | None) -> None:
    address = parse_address(value, port=port)
    assert (None if address is None else str(address)) == parsed


@given(peer=st.ip_addresses(), hops=st.lists(st.one_of(st.ip_addresses().map(str), st.text()),
                                              max_size=6))
def test_an_untrusted_peer_is_never_replaced(peer: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                             hops: list[str]) -> None:
    """Whatever a client writes, unless its TCP peer is a trusted proxy, it is its own address."""
    if PROXIES.is_trusted(str(peer)):
        return
    assert PROXIES.of(str(peer), [", ".join(hops)]) == str(peer)


@given(hops=st.lists(st.one_of(st.ip_addresses().map(str), st.text()), max_size=6))
def test_the_client_is_an_address_or_the_peer(hops: list[str]) -> None:
    client = PROXIES.of("10.0.0.2", hops)
    assert client == "10.0.0.2" or parse_address(client, port=False) is not None


def test_settings_take_comma_separated_proxies_and_refuse_bad_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERENCEOPS_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7/32")
    assert Settings().trusted_proxies == ("10.0.0.0/8", "192.168.1.7/32")
    for bad, words in (("0.0.0.0/0", "trusts every address"), ("10.0.0.1/8", "not a CIDR")):
        monkeypatch.setenv("INFERENCEOPS_TRUSTED_PROXIES", bad)
        with pytest.raises(ValidationError, match=words):
            Settings()
    monkeypatch.delenv("INFERENCEOPS_TRUSTED_PROXIES")
    assert Settings().trusted_proxies == ()
