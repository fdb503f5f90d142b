"""Parsing NFF-Go rule tables: text and JSON forms, L3 and L2, and their error reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pktflow.acl import (
    L2Rules,
    L3Rules,
    RuleError,
    parse_l2_json,
    parse_l2_text,
    parse_l3_json,
    parse_l3_text,
)
from pktflow.packet.addr import parse_cidr, parse_mac

DATA = Path(__file__).resolve().parents[2] / "examples" / "tutorial"  # the tutorial's rules


def test_tutorial_rules_files_parse_to_their_tables():
    r1 = L3Rules.load(DATA / "rules1.conf").rules
    r2 = L3Rules.load(DATA / "rules2.conf").rules
    assert [str(r.src) if r.src else None for r in r1] == ["111.2.0.0/31", "111.2.0.2/32", None]
    assert [r.output for r in r1] == [1, 0, 1]
    assert [r.output for r in r2] == [1, 0, 2]
    for r in r1 + r2:
        assert (r.dst, r.proto, r.src_ports, r.dst_ports) == (None, None, None, None)
    assert [r.line for r in r1] == [6, 7, 8]  # lines in the file, for error reports


def test_free_whitespace_comments_and_blank_lines():
    text = (
        "# header comment\n\n"
        "\t10.0.0.0/8   ANY\tTCP  ANY   80    Accept   # web\n"
        "   # indented comment\n"
        "ANY ANY udp 1024:65535 53 7\n"
        "ANY ANY ANY ANY ANY\n"  # five columns: output defaults to Reject, as in NFF-Go
    )
    rules = parse_l3_text(text)
    assert len(rules) == 3
    web, dns, default = rules
    assert web.src == parse_cidr("10.0.0.0/8") and web.proto == 6
    assert web.src_ports is None and web.dst_ports == (80, 80) and web.output == 1
    assert dns.proto == 17 and dns.src_ports == (1024, 65535) and dns.output == 7
    assert default.output == 0


@pytest.mark.parametrize("text, number", [
    ("tcp", 6), ("TCP", 6), ("Tcp", 6), ("6", 6), ("0x06", 6), ("udp", 17), ("0x11", 17),
    ("icmp", 1), ("1", 1), ("gre", 47), ("icmp6", 58), ("sctp", 132), ("255", 255),
])
def test_protocol_names_and_numbers(text, number):
    (rule,) = parse_l3_text(f"ANY ANY {text} ANY ANY Accept")
    assert rule.proto == number


def test_full_port_range_means_any_and_single_port_is_a_range():
    (full, single) = parse_l3_text("ANY ANY tcp 0:65535 ANY 1\nANY ANY udp 7 7:7 1")
    assert full.src_ports is None
    assert single.src_ports == (7, 7) == single.dst_ports


def test_ipv6_rules_and_families():
    rules = parse_l3_text(
        "2001:db8::/32  ANY  tcp  ANY  443  1\n"
        "ANY  fe80::1  ANY  ANY  ANY  2\n"
        "10.0.0.0/8  ANY  ANY  ANY  ANY  3\n"
        "ANY  ANY  ANY  ANY  ANY  4\n"
    )
    assert [r.families for r in rules] == [(6,), (6,), (4,), (4, 6)]
    assert rules[1].dst.prefix == 128


@pytest.mark.parametrize("line, expected", [
    ("111.2.0.300/31 ANY ANY ANY ANY 1", 'bad CIDR "111.2.0.300/31"'),
    ("10.0.0.0/33 ANY ANY ANY ANY 1", 'bad CIDR "10.0.0.0/33": prefix must be'),
    ("ANY 2001:db8::g/64 ANY ANY ANY 1", 'bad CIDR "2001:db8::g/64"'),
    ("ANY ANY tcpx ANY ANY 1", 'bad protocol "tcpx": expected ANY, a number'),
    ("ANY ANY 256 ANY ANY 1", 'bad protocol "256"'),
    ("ANY ANY tcp 70000 ANY 1", 'bad source port "70000"'),
    ("ANY ANY tcp ANY 9:3 1", 'bad destination port "9:3": range start is above its end'),
    ("ANY ANY tcp ANY 1:x 1", 'bad destination port "1:x"'),
    ("ANY ANY tcp ANY ANY Maybe", 'bad output "Maybe": expected Accept, Reject or a flow'),
    ("ANY ANY tcp ANY ANY -1", 'bad output "-1"'),
    ("ANY ANY tcp ANY", "expected 6 columns (source CIDR, destination CIDR, protocol"),
    ("ANY ANY tcp ANY ANY 1 extra", "expected 6 columns"),
    ("10.0.0.0/8 ::/0 ANY ANY ANY 1", 'source "10.0.0.0/8" and destination "::/0" mix IPv4'),
    ("ANY ANY icmp 1 ANY 1", 'protocol "icmp" has no ports'),
])
def test_each_bad_field_is_named_with_file_and_line(line, expected):
    with pytest.raises(RuleError) as e:
        parse_l3_text(f"# ok\nANY ANY ANY ANY ANY Accept\n\n{line}\n", "rules2.conf")
    assert f"rules2.conf:4: {expected}" in str(e.value)
    assert [err.line for err in e.value.errors] == [4]


def test_a_load_fails_as_a_whole_listing_every_bad_line(tmp_path):
    path = tmp_path / "rules2.conf"
    path.write_text(
        "111.2.0.0/31 ANY ANY ANY ANY 1\n"
        "111.2.0.2/32 ANY ANY ANY ANY 0\n"
        "ANY ANY ANY ANY ANY 2\n"
        "111.2.0.300/31 ANY ANY ANY ANY 1\n"
        "ANY ANY ANY ANY ANY Bogus\n"
        "ANY ANY bad 1:2 ANY 1\n"
    )
    with pytest.raises(RuleError) as e:
        L3Rules.load(path)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f'{path}:4: bad CIDR "111.2.0.300/31"')
    assert lines[1].startswith(f'{path}:5: bad output "Bogus"')
    assert any(f"{path}:6: bad protocol" in line for line in lines)
    assert {err.line for err in e.value.errors} == {4, 5, 6}


def test_missing_file_is_a_rule_error_naming_it(tmp_path):
    with pytest.raises(RuleError, match=r"nope\.conf: cannot read: No such file"):
        L3Rules.load(tmp_path / "nope.conf")


def test_l3_json_form_matches_the_text_form():
    doc = {"L3Rules": [
        {"SrcAddr": "111.2.0.0/31", "DstAddr": "ANY", "ID": "ANY", "SrcPort": "ANY",
         "DstPort": "ANY", "OutputNumber": "Accept"},
        {"srcaddr": "2001:db8::/48", "dstaddr": "ANY", "id": "tcp", "srcport": "1024:2047",
         "dstport": 80, "outputnumber": 3},
        {"SrcAddr": "ANY", "DstAddr": "ANY", "ID": "0x11", "SrcPort": "ANY",
         "DstPort": "ANY"},
    ]}
    text = parse_l3_text(
        "111.2.0.0/31 ANY ANY ANY ANY Accept\n"
        "2001:db8::/48 ANY tcp 1024:2047 80 3\n"
        "ANY ANY 0x11 ANY ANY Reject\n"
    )
    from_json = parse_l3_json(json.dumps(doc, indent=2))
    assert [(r.src, r.dst, r.proto, r.src_ports, r.dst_ports, r.output) for r in from_json] == [
        (r.src, r.dst, r.proto, r.src_ports, r.dst_ports, r.output) for r in text]
    assert L3Rules.parse(json.dumps(doc)).rules[1].output == 3  # auto-detected JSON


def test_json_errors_name_the_line_of_the_bad_rule():
    text = json.dumps({"L3Rules": [
        {"SrcAddr": "ANY", "DstAddr": "ANY", "ID": "ANY", "SrcPort": "ANY", "DstPort": "ANY",
         "OutputNumber": "1"},
        {"SrcAddr": "10.0.0.1/40", "DstAddr": "ANY", "ID": "tcp", "SrcPort": "ANY",
         "DstPort": "ANY", "OutputNumber": "1", "Colour": "red"},
    ]}, indent=1)
    bad_line = text.splitlines().index("  {", 5) + 1  # line where the second rule opens
    with pytest.raises(RuleError) as e:
        parse_l3_json(text, "acl.json")
    msg = str(e.value)
    assert f'acl.json:{bad_line}: bad CIDR "10.0.0.1/40"' in msg
    assert f'acl.json:{bad_line}: rule 2: unknown key "Colour"' in msg


@pytest.mark.parametrize("text, expected", [
    ('{"L3Rules": [', "acl.json:1: bad JSON"),
    ('{"Rules": []}', 'acl.json:1: expected a JSON object with a list "L3Rules"'),
    ('{"L3Rules": [{"SrcAddr": "ANY"}]}', "rule 1: missing DstAddr, ID, SrcPort, DstPort"),
    ('{"L3Rules": [7]}', "rule 1: expected a JSON object"),
    ('{"L3Rules": [{"SrcAddr": ["ANY"]}]}', 'rule 1: "SrcAddr" must be a string'),
])
def test_bad_json_documents(text, expected):
    with pytest.raises(RuleError) as e:
        parse_l3_json(text, "acl.json")
    assert expected in str(e.value)


def test_l2_text_forms():
    rules = parse_l2_text(
        "# src MAC            dst MAC            type   [vlan]  output\n"
        "00:11:22:33:44:55    ANY                ipv4           Accept\n"
        "ANY                  02:00:00:00:00:0a  0x86dd  100    2\n"
        "ANY                  ANY                ARP     10:20  3\n"
        "ANY                  ANY                2048\n"
    )
    assert rules[0].src == parse_mac("00:11:22:33:44:55") and rules[0].ethertype == 0x0800
    assert rules[0].vlan is None and rules[0].output == 1
    assert rules[1].dst == parse_mac("02:00:00:00:00:0a") and rules[1].ethertype == 0x86DD
    assert rules[1].vlan == (100, 100) and rules[1].output == 2
    assert rules[2].ethertype == 0x0806 and rules[2].vlan == (10, 20)
    assert rules[3].ethertype == 0x0800 and rules[3].output == 0  # no output: Reject


@pytest.mark.parametrize("line, expected", [
    ("00:11:22:33:44 ANY ipv4 1", 'bad source MAC: bad MAC address "00:11:22:33:44"'),
    ("ANY zz:11:22:33:44:55 ipv4 1", "bad destination MAC"),
    ("ANY ANY ipx 1", 'bad ethertype "ipx"'),
    ("ANY ANY ipv4 4096 1", 'bad VLAN id "4096"'),
    ("ANY ANY", "expected 4 or 5 columns"),
])
def test_l2_errors(line, expected):
    with pytest.raises(RuleError) as e:
        parse_l2_text(f"ANY ANY ANY 1\n{line}\n", "l2.conf")
    assert f"l2.conf:2: {expected}" in str(e.value)


def test_l2_json_form():
    doc = {"L2Rules": [
        {"Source": "00:11:22:33:44:55", "Destination": "ANY", "ID": "ipv6", "Rule": "Accept"},
        {"Source": "ANY", "Destination": "ANY", "ID": "ANY", "VLAN": "5", "Rule": "4"},
        {"Source": "ANY", "Destination": "ANY", "ID": "arp"},
    ]}
    rules = L2Rules.parse(json.dumps(doc)).rules
    assert [(r.ethertype, r.vlan, r.output) for r in rules] == [
        (0x86DD, None, 1), (None, (5, 5), 4), (0x0806, None, 0)]
    with pytest.raises(RuleError, match="rule 1: missing ID"):
        parse_l2_json('{"L2Rules": [{"Source": "ANY", "Destination": "ANY"}]}')


def test_rules_print_back_in_table_form():
    rules = parse_l3_text("10.0.0.0/8 ANY tcp 1:2 80 Accept\nANY ::/0 ANY ANY ANY 9")
    assert str(rules[0]).split() == ["10.0.0.0/8", "ANY", "6", "1:2", "80", "Accept"]
    assert parse_l3_text(str(rules[1]))[0] == parse_l3_text("ANY ::/0 ANY ANY ANY 9")[0]


def test_files_with_bom_and_crlf_line_ends(tmp_path):
    path = tmp_path / "win.conf"
    path.write_bytes(b"\xef\xbb\xbf111.2.0.0/31 ANY ANY ANY ANY 1\r\nANY ANY ANY ANY ANY 2\r\n")
    assert [r.output for r in L3Rules.load(path).rules] == [1, 2]
