"""MAC, IPv4, IPv6 and CIDR parsing and formatting, round trips and clear errors."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pktflow.packet import (
    CIDR,
    AddressError,
    IPv4Addr,
    IPv6Addr,
    MACAddr,
    parse_cidr,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
)


@settings(max_examples=100)
@given(st.integers(0, 2**48 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**128 - 1))
def test_round_trips(mac, v4, v6):
    assert parse_mac(str(MACAddr(mac))) == mac
    assert str(IPv4Addr(v4)) == str(ipaddress.IPv4Address(v4))
    assert parse_ipv4(str(IPv4Addr(v4))) == v4
    assert str(IPv6Addr(v6)) == str(ipaddress.IPv6Address(v6))  # RFC 5952 short form
    assert parse_ipv6(str(IPv6Addr(v6))) == v6
    assert IPv4Addr(IPv4Addr(v4).packed) == v4 and MACAddr(MACAddr(mac).packed) == mac


def test_formats_and_equality():
    mac = MACAddr("00:1B:21:3a:4B:5c")
    assert str(mac) == "00:1b:21:3a:4b:5c" and repr(mac) == "MACAddr('00:1b:21:3a:4b:5c')"
    assert mac == "00-1b-21-3a-4b-5c" == MACAddr("001b.213a.4b5c") == MACAddr("0:1b:21:3a:4b:5c")
    ip = IPv4Addr("111.22.3.0")
    assert ip == "111.22.3.0" and ip == 0x6F160300 and ip != "111.22.3.1" and ip != "junk"
    assert {ip: 1}[IPv4Addr(0x6F160300)] == 1  # hashes as the int it is
    assert IPv6Addr("2001:0db8:0000:0000:0000:0000:0000:0001") == "2001:db8::1"
    assert str(IPv6Addr("::ffff:1.2.3.4")) == "::ffff:102:304"


@pytest.mark.parametrize("text,needle", [
    ("00:11:22:33:44", "six hex bytes"),
    ("00:11:22:33:44:gg", "six hex bytes"),
    ("+0:11:22:33:44:55", "six hex bytes"),
    ("00_1.2233.4455", "six hex bytes"),
    ("001:1:22:33:44:55", "six hex bytes"),
    ("", "six hex bytes"),
])
def test_bad_mac(text, needle):
    with pytest.raises(AddressError, match=needle) as e:
        parse_mac(text)
    assert f'"{text}"' in str(e.value)


@pytest.mark.parametrize("text,needle", [
    ("10.0.0", "four numbers"),
    ("10.0.0.256", '"256" is not a number from 0 to 255'),
    ("10.0.-1.1", '"-1"'),
    ("10.0.².1", '"²"'),
    ("10.0.٣.1", '"٣"'),
    ("10..0.1", '""'),
])
def test_bad_ipv4(text, needle):
    with pytest.raises(AddressError, match=needle):
        parse_ipv4(text)


def test_bad_ipv6_and_wrong_types():
    with pytest.raises(AddressError, match='bad IPv6 address "2001:db8:::1"'):
        parse_ipv6("2001:db8:::1")
    with pytest.raises(AddressError, match="must be text, got int"):
        parse_ipv4(167772161)  # type: ignore[arg-type]
    with pytest.raises(AddressError, match="needs 4 bytes, got 3"):
        IPv4Addr(b"\x01\x02\x03")
    with pytest.raises(AddressError, match="does not fit in 48 bits"):
        MACAddr(1 << 48)
    with pytest.raises(AddressError, match="cannot make a IPv6 address from float"):
        IPv6Addr(1.5)  # type: ignore[arg-type]


def test_cidr():
    net = parse_cidr("111.2.0.0/31")
    assert net == CIDR(4, 0x6F020000, 31) and str(net) == "111.2.0.0/31"
    assert net.contains(IPv4Addr("111.2.0.1")) and not net.contains(IPv4Addr("111.2.0.2"))
    assert parse_cidr("111.2.0.2") == CIDR(4, 0x6F020002, 32)
    assert parse_cidr("10.1.2.3/8") == parse_cidr("10.0.0.0/8")  # host bits cleared
    assert parse_cidr("0.0.0.0/0").contains(0xFFFFFFFF)
    v6 = parse_cidr("2001:db8::1/32")
    assert str(v6) == "2001:db8::/32" and v6.contains(parse_ipv6("2001:db8:ffff::"))
    assert not v6.contains(parse_ipv6("2001:db9::"))
    with pytest.raises(AddressError, match="host bits are set \\(network is 10.0.0.0/8\\)"):
        parse_cidr("10.1.2.3/8", strict=True)
    for bad, needle in (("10.0.0.0/33", "from 0 to 32"), ("::/129", "from 0 to 128"),
                        ("10.0.0.0/x", "prefix"), ("10.0.0/8", "not an IPv4 address"),
                        ("1.2.3.4/²", "prefix")):
        with pytest.raises(AddressError, match=needle):
            parse_cidr(bad)
