"""Per-packet metadata: the columns of `Pool.meta` and the bits of its FLAGS column.

Every buffer in a pool owns one row of `meta` (int32). Offsets are absolute positions in
the buffer's row of `Pool.data`, so a header's first byte is `data[b, meta[b, L3]]`.
An offset of -1 means the header is absent. These names are plain module constants so
compiled kernels see them as compile-time constants.
"""

# Columns of Pool.meta
START = 0  # offset of the frame's first byte (the Ethernet header)
LEN = 1  # frame length in bytes
PORT = 2  # input port id (-1 for generated packets)
L3 = 3  # offset of the L3 header (ARP, IPv4, IPv6), -1 if none
L4 = 4  # offset of the L4 header (TCP, UDP, ICMP, ICMPv6, GRE), -1 if none
PAYLOAD = 5  # offset of the L4 payload, -1 if none
ETYPE = 6  # ethertype after VLAN tags and MPLS labels (0x0800, 0x86dd, 0x0806, ...)
PROTO = 7  # L4 protocol number after IPv6 extension headers, -1 if no L3
FLAGS = 8  # bit set of the F_* values below
MPLS = 9  # offset of the first MPLS label stack entry, -1 if none
TUNNEL = 10  # offset of a tunnel header (VXLAN), -1 if none
OUT = 11  # scratch for the flow engine: chosen flow index or output port
NVLAN = 12  # number of 802.1Q/802.1ad tags (0, 1 or 2)
USER = 13  # free for user code
NCOLS = 16

# Bits of meta[b, FLAGS]
F_VLAN = 1 << 0
F_QINQ = 1 << 1
F_MPLS = 1 << 2
F_ARP = 1 << 3
F_IPV4 = 1 << 4
F_IPV6 = 1 << 5
F_TCP = 1 << 6
F_UDP = 1 << 7
F_ICMP = 1 << 8
F_ICMP6 = 1 << 9
F_GRE = 1 << 10
F_VXLAN = 1 << 11
F_IPV4_OPTIONS = 1 << 12
F_IPV6_EXT = 1 << 13
F_FRAGMENT = 1 << 14  # a non-first IP fragment: no L4 header to parse
# Malformed-input marks: parsing stopped at this layer and left the rest absent.
F_BAD_L2 = 1 << 20  # shorter than an Ethernet header or a VLAN/MPLS tag
F_BAD_L3 = 1 << 21  # IPv4 IHL < 5, total length past the frame, truncated IPv6 or ext chain
F_BAD_L4 = 1 << 22  # L4 header truncated or TCP data offset past the end
F_MALFORMED = F_BAD_L2 | F_BAD_L3 | F_BAD_L4

ETH_HLEN = 14
ETYPE_IPV4 = 0x0800
ETYPE_ARP = 0x0806
ETYPE_VLAN = 0x8100
ETYPE_QINQ = 0x88A8
ETYPE_IPV6 = 0x86DD
ETYPE_MPLS = 0x8847
ETYPE_MPLS_MC = 0x8848

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58

VXLAN_PORT = 4789
