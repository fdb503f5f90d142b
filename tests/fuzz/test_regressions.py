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


def test_kpktgen_config_that_is_not_utf8_is_a_config_error(tmp_path):
    """fuzz kpktgen_config: a run config with a byte that is not UTF-8 escaped as
    UnicodeDecodeError from load_config; it must be a ConfigError naming the file."""
    from pktflow.kpktgen.config import ConfigError, load_config

    path = tmp_path / "run.toml"
    path.write_bytes(b'dir = "/tmp/pg"\n[[device\xff]]\nname = "veth0"\n')
    with pytest.raises(ConfigError, match=r"run\.toml: not UTF-8 text \(byte 24\)"):
        load_config(path)


def test_kpktgen_write_with_a_superscript_digit_is_answered_not_raised():
    """fuzz kpktgen_writes: "count \\xb2" (latin-1 '²', which str.isdigit() accepts) raised
    ValueError from int(); the kernel reads ASCII digits only, so it reads no number."""
    from pktflow.kpktgen.params import DeviceConfig

    cfg = DeviceConfig()
    outcome = cfg.write(b"count \xb2")
    assert outcome.result is not None and cfg.count == 0
    assert DeviceConfig().write(b"count 12\xb2").ok and DeviceConfig().write(b"count 12").ok


def test_ipv6_ah_header_shorter_than_its_fixed_fields_is_malformed():
    """fuzz scapy_diff: an AH extension header with Payload Len 0 (8 bytes, less than AH's
    12 bytes of fixed fields) was skipped and the bytes after it parsed as UDP."""
    from pktflow.packet import meta as M

    pool = Pool(buffers=2, name="regress")
    head = bytes(12) + b"\x86\xdd" + bytes.fromhex("6000000000133340") + bytes(15) + b"\x01" \
        + bytes(15) + b"\x01"
    udp = bytes.fromhex("00360035000b3b0a616263")
    for length_field, ok in ((0, False), (1, True)):
        ah = bytes([17, length_field]) + bytes(4 * (length_field + 2) - 2)
        raw = bytearray(head + ah + udp)
        raw[18:20] = (len(ah) + len(udp)).to_bytes(2, "big")
        pkt = build.put(pool, 0, bytes(raw))
        assert bool(pkt.flags & M.F_BAD_L3) != ok, length_field
        assert pkt.has("udp") == ok


@pytest.mark.parametrize("spec", ["\xb2=mem:a", "\u0660=mem:a", "=mem:a", "x=mem:a"])
def test_port_spec_with_an_odd_id_is_a_port_spec_error(spec):
    """fuzz port_spec: a digit int() refuses ('²') raised ValueError; it must be the
    PortSpecError that names the spec and the expected form."""
    from pktflow.ports.base import PortSpecError, parse_port_spec

    with pytest.raises(PortSpecError, match="expected ID=DRIVER:ARGS"):
        parse_port_spec(spec)


def test_port_spec_id_is_read_as_stripped():
    """fuzz port_spec: '\x1c0' passed the check as '0' (str.strip() removes the control
    character) but int() was given the unstripped text and raised ValueError."""
    from pktflow.ports.base import parse_port_spec

    assert parse_port_spec("\x1c0=mem:a") == (0, "mem", "a")
    assert parse_port_spec(" 1 =mem:a") == (1, "mem", "a")
