"""The engine without FUSE: the frames of parameters the sample scripts do not touch
(size steps, VLAN tag, MAC counts, burst copies, random flows) and packet pacing, checked
on a veth peer with tcpdump."""

from __future__ import annotations

import dataclasses
import struct
import time
from collections import Counter

import pytest

from pktflow.kpktgen.params import parse_device_text

pytestmark = pytest.mark.root

GEN_IF, PEER_IF = "kpe0", "kpe1"


@pytest.fixture(scope="module")
def lab():
    from pktflow.testbed.net import VethLab

    with VethLab("kpe", ["g", "p"], [("g", GEN_IF, "p", PEER_IF)]) as lab:
        yield lab


def run(lab, tmp_path, lines: list[str], *, sharing: bool = False) -> tuple[list[bytes], str]:
    """Configure one device with `lines`, run it to its count, return the peer's frames
    and the device file's text."""
    from test_samples import pcap_frames, start_capture, stop_capture

    from pktflow.kpktgen.engine import Engine
    from pktflow.ports.linux import netns

    pcap = tmp_path / "peer.pcap"
    cap = start_capture(lab, "p", PEER_IF, pcap)
    try:
        with netns(lab.ns("g")):
            engine = Engine(threads=1, socket_kind="packet")
            try:
                assert engine.write("kpktgend_0", f"add_device {GEN_IF}\n".encode()) == 0
                dev = engine.device(GEN_IF)
                if sharing:  # as on a NIC that can send one skb several times
                    dev.iface = dataclasses.replace(dev.iface, driver="e1000")
                for line in lines:
                    assert engine.write(GEN_IF, (line + "\n").encode()) == 0, line
                    assert not dev.st.result or dev.st.result.startswith("OK"), dev.st.result
                assert engine.start(timeout=60)
                text = engine.read(GEN_IF)
            finally:
                engine.close()
    finally:
        stop_capture(cap)
    frames = [f for f in pcap_frames(pcap) if f[12:14] in (b"\x08\x00", b"\x81\x00",
                                                           b"\x88\x47")]
    return frames, text


BASE = ["dst 198.18.9.1", "dst_mac 02:00:00:00:00:09", "flag NO_TIMESTAMP"]


def test_size_steps_vlan_and_mac_counts(lab, tmp_path):
    frames, text = run(lab, tmp_path, [*BASE, "count 100", "min_pkt_size 64",
                                       "max_pkt_size 68", "vlan_id 5", "vlan_p 3",
                                       "dst_mac_count 4", "tos 10"])
    assert len(frames) == 100
    # the kernel steps before each packet: 65, 66, 67, 68, 64, 65, ...
    assert [len(f) for f in frames[:6]] == [65, 66, 67, 68, 64, 65]
    assert {f[12:16] for f in frames} == {struct.pack("!HH", 0x8100, (3 << 13) | 5)}
    assert {f[16:18] for f in frames} == {b"\x08\x00"} and {f[19] for f in frames} == {0x10}
    assert [f[5] for f in frames[:5]] == [9, 10, 11, 12, 9]  # dst_mac .. dst_mac + 3
    assert parse_device_text(text).figures.packets == 100


def test_mpls_labels_and_stacked_vlan_tags(lab, tmp_path):
    frames, _ = run(lab, tmp_path, [*BASE, "count 20", "pkt_size 80",
                                    "mpls 0001000a,0002000b,00003000"])
    assert len(frames) == 20 and {len(f) for f in frames} == {80}
    # labels as written, the bottom-of-stack bit only on the last, IPv4 right after
    assert {f[12:26] for f in frames} == {bytes.fromhex("8847" "0001000a" "0002000b"
                                                        "00003100")}
    assert {f[26] for f in frames} == {0x45}
    frames, _ = run(lab, tmp_path, [*BASE, "count 20", "pkt_size 80", "vlan_id 5",
                                    "vlan_cfi 1", "svlan_id 7", "svlan_p 2"])
    assert len(frames) == 20 and {len(f) for f in frames} == {80}
    tags = struct.pack("!HHHHH", 0x8100, (2 << 13) | 7, 0x8100, (1 << 12) | 5, 0x0800)
    assert {f[12:22] for f in frames} == {tags} and {f[22] for f in frames} == {0x45}


def test_burst_sends_each_built_packet_burst_times(lab, tmp_path):
    frames, text = run(lab, tmp_path, [*BASE, "count 400", "burst 4", "udp_src_min 100",
                                       "udp_src_max 200"], sharing=True)
    assert len(frames) == 400
    seqs = [struct.unpack("!I", f[46:50])[0] for f in frames]
    assert seqs == [1 + i // 4 for i in range(400)]
    assert all(frames[i] == frames[i - i % 4] for i in range(400))  # copies, not new packets
    assert "     burst: 4" in text


def test_random_flows_keep_their_destination(lab, tmp_path):
    frames, _ = run(lab, tmp_path, [*BASE, "count 600", "dst_min 198.18.9.0",
                                    "dst_max 198.18.9.255", "flows 3", "flowlen 1000",
                                    "flag FLOW_RND"])
    dsts = Counter(f[30:34] for f in frames)
    # three flows picked at random, each with the destination it got first
    assert len(dsts) == 3 and sum(dsts.values()) == 600


def test_random_destinations_skip_loopback_and_keep_checksums(lab, tmp_path):
    from test_samples import ip_checksum_ok

    frames, _ = run(lab, tmp_path, [*BASE, "count 300", "dst_min 126.255.255.250",
                                    "dst_max 127.0.0.200", "flag IPDST_RND"])
    assert len(frames) == 300
    dsts = {f[30:34] for f in frames}
    # [min, max - 1] without 127/8: only the six addresses below it remain
    assert dsts == {bytes([126, 255, 255, x]) for x in range(250, 256)}
    assert all(ip_checksum_ok(f) for f in frames)


def test_ratep_paces_the_packets(lab, tmp_path):
    t = time.monotonic()
    frames, text = run(lab, tmp_path, [*BASE, "count 200", "ratep 2000"])
    assert len(frames) == 200
    r = parse_device_text(text).figures
    assert r.usec >= 99_000  # 200 packets 500 us apart cannot take less than ~0.1 s
    assert r.pps <= 2100 and r.usec_idle > 0
    assert time.monotonic() - t >= 0.1


def test_engine_keeps_serving_after_a_device_cannot_start(lab, tmp_path):
    from pktflow.kpktgen.engine import Engine
    from pktflow.ports.linux import netns

    with netns(lab.ns("g")):
        engine = Engine(threads=1, socket_kind="packet")
        try:
            engine.write("kpktgend_0", f"add_device {GEN_IF}\n".encode())
            engine.write(GEN_IF, b"mpls 0001000a\n")
            engine.write(GEN_IF, b"flag MPLS_RND\n")
            assert engine.start(timeout=30)
            result = parse_device_text(engine.read(GEN_IF)).result
            assert result.startswith("ERROR: the userspace engine does not generate random MPLS")
            engine.write(GEN_IF, b"vlan_id 7\n")  # turns MPLS off, as in the kernel
            engine.write(GEN_IF, b"count 5\n")
            assert engine.start(timeout=30)
            assert parse_device_text(engine.read(GEN_IF)).figures.packets == 5
        finally:
            engine.close()
