"""Random packets built by Scapy: pktflow parses every field and checksum as Scapy does,
and the compiled accessors and the object API agree on every field, reading and writing."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packet_strategies import frames
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from pktflow.packet import LAYERS, Packet, Pool, build
from pktflow.packet import meta as M
from pktflow.packet.accessors import acc

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
POOL = Pool(buffers=4, name="props")  # module-wide: hypothesis reruns the test body


def _tags(sp):
    tags = []
    layer = sp.payload
    while isinstance(layer, Dot1Q | Dot1AD):
        tags.append(layer)
        layer = layer.payload
    return tags


def expected(sp) -> dict[str, dict[str, object]]:
    """Every pktflow field, as Scapy decodes it, for the headers pktflow should find."""
    exp: dict[str, dict[str, object]] = {
        "eth": {"dst": sp.dst, "src": sp.src, "type": sp.type}
    }
    tags = _tags(sp)
    tpids = [sp.type] + [t.type for t in tags]  # each tag's TPID is the type before it
    for name, tag, tpid in zip(("vlan", "inner_vlan"), tags, tpids, strict=False):
        exp[name] = {"tpid": tpid, "pcp": tag.prio, "dei": tag.dei, "vid": tag.vlan,
                     "type": tag.type}
    if MPLS in sp:
        m = sp[MPLS]
        exp["mpls"] = {"label": m.label, "tc": m.cos, "s": m.s, "ttl": m.ttl}
    if ARP in sp:
        a = sp[ARP]
        exp["arp"] = {"htype": a.hwtype, "ptype": a.ptype, "hlen": a.hwlen, "plen": a.plen,
                      "op": a.op, "sha": a.hwsrc, "spa": a.psrc, "tha": a.hwdst, "tpa": a.pdst}
        return exp
    l4 = None
    if IP in sp:
        ip = sp[IP]
        flags = int(ip.flags)
        exp["ipv4"] = {"version": 4, "ihl": ip.ihl, "tos": ip.tos, "dscp": ip.tos >> 2,
                       "ecn": ip.tos & 3, "total_length": ip.len, "id": ip.id, "flags": flags,
                       "df": (flags >> 1) & 1, "mf": flags & 1, "frag_offset": ip.frag,
                       "ttl": ip.ttl, "proto": ip.proto, "checksum": ip.chksum, "src": ip.src,
                       "dst": ip.dst}
        l4 = ip.payload
    else:
        ip6 = sp[IPv6]
        exp["ipv6"] = {"version": 6, "traffic_class": ip6.tc, "flow_label": ip6.fl,
                       "payload_length": ip6.plen, "next_header": ip6.nh,
                       "hop_limit": ip6.hlim, "src": ip6.src, "dst": ip6.dst}
        l4 = ip6.payload
        while l4.name.startswith("IPv6 Extension") or "Option Header" in l4.name \
                or l4.name == "Routing Header" or l4.name == "Fragmentation header":
            l4 = l4.payload
    if isinstance(l4, TCP):
        exp["tcp"] = {"src_port": l4.sport, "dst_port": l4.dport, "seq": l4.seq, "ack": l4.ack,
                      "data_offset": l4.dataofs, "flags": int(l4.flags), "window": l4.window,
                      "checksum": l4.chksum, "urgent": l4.urgptr}
    elif isinstance(l4, UDP):
        exp["udp"] = {"src_port": l4.sport, "dst_port": l4.dport, "length": l4.len,
                      "checksum": l4.chksum}
        if isinstance(l4.payload, VXLAN):
            exp["vxlan"] = {"flags": int(l4.payload.flags), "vni": l4.payload.vni}
    elif isinstance(l4, ICMP):
        exp["icmp"] = {"type": l4.type, "code": l4.code, "checksum": l4.chksum, "id": l4.id,
                       "seq": l4.seq}
    elif isinstance(l4, GRE):
        exp["gre"] = {"checksum_present": l4.chksum_present, "key_present": l4.key_present,
                      "seq_present": l4.seqnum_present, "version": l4.version,
                      "proto": l4.proto}
    elif isinstance(l4, ICMPv6EchoRequest | ICMPv6EchoReply):
        exp["icmp6"] = {"type": l4.type, "code": l4.code, "checksum": l4.cksum, "id": l4.id,
                        "seq": l4.seq}
    elif isinstance(l4, ICMPv6ND_NS | ICMPv6ND_NA):
        opt = l4.payload
        assert isinstance(opt, ICMPv6NDOptSrcLLAddr | ICMPv6NDOptDstLLAddr)
        exp["icmp6"] = {"type": l4.type, "code": l4.code, "checksum": l4.cksum,
                        "target": l4.tgt, "nd_opt_type": opt.type, "nd_opt_len": opt.len,
                        "nd_lladdr": opt.lladdr}
        if isinstance(l4, ICMPv6ND_NA):
            exp["icmp6"]["nd_flags"] = (l4.R << 2) | (l4.S << 1) | l4.O
    exp["_l4"] = {"layer": l4}
    return exp


def _load(raw: bytes) -> Packet:
    return build.put(POOL, 0, raw)


@SETTINGS
@given(frames())
def test_every_field_and_checksum_matches_scapy(sp):
    raw = bytes(sp)
    sp = Ether(raw)  # what Scapy decodes from the wire, checksums included
    exp = expected(sp)
    l4 = exp.pop("_l4", {}).get("layer")
    pkt = _load(raw)
    assert not pkt.malformed, (pkt, sp.summary())
    assert set(pkt.layers()) == set(exp), sp.summary()
    for layer, fields in exp.items():
        view = getattr(pkt, layer)
        for name, value in fields.items():
            assert getattr(view, name) == value, (layer, name, sp.summary())
    if "ipv4" in exp:
        assert pkt.ipv4.compute_checksum() == exp["ipv4"]["checksum"]
    for layer in ("tcp", "udp", "icmp", "icmp6"):
        if layer in exp:
            assert getattr(pkt, layer).compute_checksum() == exp[layer]["checksum"]
            assert getattr(pkt, layer).checksum_ok()
    assert pkt.checksums_ok()
    if l4 is not None and not isinstance(l4, ICMPv6EchoRequest | ICMPv6EchoReply |
                                         ICMPv6ND_NS | ICMPv6ND_NA) and (
            "tcp" in exp or "udp" in exp or "icmp" in exp or "gre" in exp):
        payload_at = POOL.meta[0, M.PAYLOAD] - pkt.start
        assert payload_at == len(raw) - len(bytes(l4.payload))
    # Zero every checksum, recompute: the frame is Scapy's again.
    for layer in ("ipv4", "tcp", "udp", "icmp", "icmp6"):
        if layer in exp:
            getattr(pkt, layer).checksum = 0
    if set(exp) & {"ipv4", "tcp", "udp", "icmp", "icmp6"}:
        assert pkt.update_checksums()
    assert pkt.bytes() == raw


def _field_value(f, rng: np.random.Generator) -> int:
    return int(rng.integers(0, f.max_value + 1, dtype=np.uint64)) if f.width < 64 else 0


@SETTINGS
@given(frames(), st.integers(0, 2**32 - 1))
def test_compiled_accessors_and_object_api_agree(sp, seed):
    raw = bytes(sp)
    pkt = _load(raw)
    data, meta, b = POOL.data, POOL.meta, pkt.b
    rng = np.random.default_rng(seed)
    for layer in pkt.layers():
        assert getattr(acc, f"has_{layer}")(meta, b)
        view = getattr(pkt, layer)
        assert getattr(acc, f"{layer}_offset")(meta, b) - pkt.start == view.offset
        for f in LAYERS[layer].fields:
            if view.offset + f.offset + f.size > pkt.length:
                continue  # fields of longer variants (ICMPv6 ND on an echo) past the end
            get = getattr(acc, f"{layer}_{f.name}_get")
            put = getattr(acc, f"{layer}_{f.name}_set")
            if f.kind == "ipv6":
                assert bytes(get(data, meta, b)) == getattr(view, f.name).packed
                new = rng.integers(0, 256, 16, dtype=np.uint8)
                put(data, meta, b, new)
                assert getattr(view, f.name).packed == new.tobytes()
                setattr(view, f.name, str(getattr(view, f.name)))
                continue
            assert get(data, meta, b) == getattr(view, f.name), (layer, f.name)
            value = _field_value(f, rng)
            put(data, meta, b, value)  # compiled write, object read
            assert getattr(view, f.name) == value, (layer, f.name)
            value2 = _field_value(f, rng)
            setattr(view, f.name, value2)  # object write, compiled read
            assert get(data, meta, b) == value2, (layer, f.name)
    for name in set(LAYERS) - set(pkt.layers()):
        assert not getattr(acc, f"has_{name}")(meta, b)
