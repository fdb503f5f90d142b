"""The core contract: object API and compiled accessors read and write the same bytes."""

import pytest

from pktflow.packet import HeaderMissing, Packet, parse_batch
from pktflow.packet.accessors import acc


def _frame() -> bytes:
    eth = bytes.fromhex("001122334455" "02000000000a" "0800")
    ip = bytes.fromhex("4500002800014000" "4006" "0000" "6f020001" "0a000002")
    tcp = bytes.fromhex("04d2162e" "00000000" "00000000" "5002ffff" "00000000")
    return eth + ip + tcp


def test_object_api_and_accessors_agree(pool):
    batch = pool.alloc(1)
    b = int(batch.idx[0])
    pool.write(b, _frame())
    assert parse_batch(pool.data, pool.meta, batch.idx, batch.n) == 0
    pkt = Packet(pool, b)
    assert pkt.layers() == ["eth", "ipv4", "tcp"]
    assert pkt.ipv4.src == "111.2.0.1"
    assert str(pkt.eth.dst) == "00:11:22:33:44:55"
    assert pkt.tcp.dst_port == 5678 == acc.tcp_dst_port_get(pool.data, pool.meta, b)
    pkt.ipv4.src = "111.22.3.0"
    assert acc.ipv4_src_get(pool.data, pool.meta, b) == int(pkt.ipv4.src)
    acc.ipv4_ttl_set(pool.data, pool.meta, b, 7)
    assert pkt.ipv4.ttl == 7 and pkt.ipv4.df == 1 and pkt.ipv4.ihl == 5
    with pytest.raises(HeaderMissing, match="eth, ipv4, tcp"):
        _ = pkt.udp
