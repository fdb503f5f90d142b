"""Inputs the fuzzers found that once crashed or disagreed; each stays fixed."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from pktflow.packet import HeaderMissing, Pool, build


def test_field_past_the_end_says_so_not_that_it_does_not_exist():
    """fuzz parse: an ICMPv6 echo's ND `target` field raised AttributeError "icmp6 has no
    field or method 'target'" (the property's HeaderMissing was retried as a missing
    attribute). It must be HeaderMissing naming the field and the packet length."""
    pkt = build.put(Pool(buffers=2, name="regress"), 0,
                    bytes(Ether() / IPv6() / ICMPv6EchoRequest()))
    with pytest.raises(HeaderMissing, match=r"icmp6\.target lies past the end of this "
                                            r"62-byte packet"):
        _ = pkt.icmp6.target
    with pytest.raises(AttributeError, match="no field or method 'tgt'"):
        _ = pkt.icmp6.tgt
    assert "target" not in pkt.icmp6.fields() and pkt.icmp6.fields()["seq"] == 0
