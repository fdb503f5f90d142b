"""nat.json errors, the committed nat.pg/nat.json, the endpoint hash table, and the
compiled NAT against the same functions run interpreted."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nat_helpers import GEN_MAC0, GEN_MAC1, nat_doc, nat_mod
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from pktflow.tutorial.nat import EXAMPLE, TARGETS, write_nat_files


@pytest.mark.parametrize("change, where", [
    (lambda d: d["private-port"].pop("subnet"), 'private-port: missing "subnet"'),
    (lambda d: d["public-port"].update(dst_mac="02:00:zz"), "public-port.dst_mac"),
    (lambda d: d["public-port"].update(subnet="dhcp"), "public-port.subnet"),
    (lambda d: d["public-port"].update(index=0), "public-port.index"),
    (lambda d: d["private-port"].update(index="zero"), "private-port.index"),
    (lambda d: d.update(timeout=0), "timeout"),
    (lambda d: d.update(timout=5), "timout: unknown setting"),
    (lambda d: d["public-port"].update({"forward-ports": [
        {"port": 80, "destination": "10.9.9.9:80"}]}),
     "public-port.forward-ports[0].destination: 10.9.9.9 is not in the private subnet"),
    (lambda d: d["public-port"].update({"forward-ports": [
        {"port": 80, "destination": "192.168.1.5", "protocol": "SCTP"}]}),
     "public-port.forward-ports[0].protocol"),
    (lambda d: d["public-port"].update({"forward-ports": [
        {"port": 70000, "destination": "192.168.1.5"}]}), "public-port.forward-ports[0].port"),
    (lambda d: d["private-port"].update({"forward-ports": []}), "private-port.forward-ports"),
])
def test_config_errors_name_the_field(tmp_path, change, where):
    doc = nat_doc()
    change(doc)
    path = tmp_path / "nat.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(nat_mod.NatConfigError) as e:
        nat_mod.load_config(path)
    assert str(e.value).startswith(f"{path}: ") and where in str(e.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(nat_mod.NatConfigError, match="cannot read"):
        nat_mod.load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"private-port": ')
    with pytest.raises(nat_mod.NatConfigError, match=f"{broken}: not valid JSON"):
        nat_mod.load_config(broken)


def test_committed_example_files_match_the_target_table(tmp_path):
    script_path, config_path = write_nat_files(tmp_path)
    # nat.pg lives with the other generator scripts, nat.json beside the NAT program.
    assert (TARGETS.parent / "nat.pg").read_text() == script_path.read_text()
    assert (EXAMPLE.parent / "nat.json").read_text() == config_path.read_text()
    config = nat_mod.load_config(EXAMPLE.parent / "nat.json")
    assert (config.private.address, config.private.mask) == (0xC0A80101, 0xFFFFFF00)
    assert (config.public.address, config.public.mask) == (0x0A010101, 0xFFFFFFFF)
    assert (config.private.next_hop, config.public.next_hop) == (
        int(nat_mod.parse_mac(GEN_MAC0)), int(nat_mod.parse_mac(GEN_MAC1)))
    script = (TARGETS.parent / "nat.pg").read_text()
    # Range mode on both ports: the original enabled it on port 0 only, which leaves the
    # server sending Pktgen's single-mode default packet, which no NAT would translate.
    assert "enable 0 range" in script and "enable 1 range" in script


def _clustered_keys(count: int, window: range) -> list[int]:
    """Keys whose home slots fall into `window` (mod the table size): long probe runs."""
    found: list[int] = []
    addr = np.arange(1 << 20, dtype=np.int64) + 0xC0A80000
    for port in range(1, 2000):
        keys = (1 << 48) | (addr << 16) | port
        h = ((keys >> 16) & 0xFFFFFFFF) * 40503 + (keys & 0xFFFF) * 2654435761 + (keys >> 48) * 97
        h ^= h >> 17
        h ^= h >> 31
        slots = h & nat_mod.table.HASH_MASK
        hit = np.isin(slots, np.array(window) & nat_mod.table.HASH_MASK)
        found.extend(int(k) for k in keys[hit])
        if len(found) >= count:
            return found[:count]
    raise AssertionError("no keys found")


CLUSTER = _clustered_keys(24, range(nat_mod.table.HASH_SLOTS - 3, nat_mod.table.HASH_SLOTS + 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(CLUSTER)), max_size=80))
def test_hash_table_against_a_dict(ops):
    keys = np.zeros(nat_mod.table.HASH_SLOTS, dtype=np.int64)
    values = np.zeros(nat_mod.table.HASH_SLOTS, dtype=np.int64)
    ref: dict[int, int] = {}
    for n, (insert, key) in enumerate(ops):
        if insert:
            nat_mod.table.hash_insert(keys, values, key, n)
            ref[key] = n
        else:
            slot = nat_mod.table.hash_find(keys, key)
            assert (slot >= 0) == (key in ref)
            if slot >= 0:
                nat_mod.table.hash_remove(keys, values, slot)
                del ref[key]
        for k in CLUSTER:  # every key still findable, none resurrected
            slot = nat_mod.table.hash_find(keys, k)
            assert (int(values[slot]) if slot >= 0 else None) == ref.get(k)
    assert np.count_nonzero(keys) == len(ref)


def _mixed_traffic(macs: tuple[str, str]) -> tuple[list[bytes], list[bytes]]:
    rnd = random.Random(11)
    out, inbound = [], []
    for k in range(120):
        host = f"192.168.1.{rnd.randrange(2, 30)}"
        l4 = rnd.choice([TCP(sport=rnd.randrange(1, 5), dport=80),
                         UDP(sport=rnd.randrange(1, 5), dport=53),
                         ICMP(type=8, id=rnd.randrange(1, 5))])
        out.append(bytes(Ether(src=GEN_MAC0, dst=macs[0]) / IP(src=host, dst="10.1.1.2") / l4
                         / bytes(k % 40)))
        port = rnd.randrange(1020, 1060)
        l4 = rnd.choice([TCP(sport=80, dport=port), UDP(sport=53, dport=port),
                         ICMP(type=0, id=port), ICMP(type=8, id=port)])
        inbound.append(bytes(Ether(src=GEN_MAC1, dst=macs[1]) / IP(src="10.1.1.2",
                                                                 dst="10.1.1.1") / l4))
    out.append(bytes(Ether(src=GEN_MAC0, dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc=GEN_MAC0, psrc="192.168.1.9", pdst="192.168.1.1")))
    out.append(bytes(Ether(src=GEN_MAC0, dst=macs[0], type=0x0800)) + b"\x45\x00")
    return out, inbound


def test_compiled_and_interpreted_nat_agree(rig):
    results = []
    for mode in ("compiled", "interpreted"):
        r = rig(mode=mode)
        assert set(r.kernels.values()) == {mode}
        out, inbound = _mixed_traffic(r.macs)
        r.send(0, out)
        r.settle()
        r.send(1, inbound)
        results.append(([bytes(p) for p in r.collect(1)], [bytes(p) for p in r.collect(0)],
                        r.nat.counters(), [(m.proto, m.public_port, m.private_address,
                                            m.private_port) for m in r.nat.mappings()]))
    assert results[0] == results[1]
    to_public, to_private, counters, mappings = results[0]
    assert len(mappings) > 20 and counters["inbound"]["forwarded"] > 10
    assert counters["outbound"]["arp-replies"] == 1 and counters["outbound"]["malformed"] == 1
