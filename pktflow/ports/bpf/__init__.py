"""The XDP program that hands an interface's frames to pktflow's AF_XDP sockets.

It is small enough to write as BPF instructions here, so no compiler is needed at install
time. Its C equivalent:

    SEC("xdp") int pktflow_xsk(struct xdp_md *ctx)
    {
        return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
    }

A frame arriving on a queue that has a socket in the XSKMAP goes to that socket; any other
frame continues to the kernel stack (XDP_PASS). Loaded and attached through libbpf
(Debian package libbpf1) with ctypes; attached as a BPF link, so the kernel detaches it by
itself when the last file descriptor closes, also when the process is killed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct

from pktflow.ports.linux import Interface

BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37  # attach type for bpf_link_create
BPF_PSEUDO_MAP_FD = 1
BPF_FUNC_redirect_map = 51
XDP_PASS = 2
XDP_MD_RX_QUEUE_INDEX = 16  # offsetof(struct xdp_md, rx_queue_index)
BPF_PROG_INFO_NAME = 64  # offsetof(struct bpf_prog_info, name), a char[16]
PROGRAM_NAME = "pktflow_xsk"  # how our program shows in `bpftool prog` and loaded_programs()


class BpfError(RuntimeError):
    """libbpf refused a map, program or attachment; the message says what to do."""


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | (src << 4), off, imm)


def redirect_program(map_fd: int) -> bytes:
    """The program's instructions with the XSKMAP's file descriptor patched in."""
    return b"".join([
        _insn(0x61, dst=2, src=1, off=XDP_MD_RX_QUEUE_INDEX),  # r2 = ctx->rx_queue_index
        _insn(0x18, dst=1, src=BPF_PSEUDO_MAP_FD, imm=map_fd),  # r1 = &xsks (two slots)
        _insn(0x00),
        _insn(0xB7, dst=3, imm=XDP_PASS),  # r3 = fallback action
        _insn(0x85, imm=BPF_FUNC_redirect_map),  # r0 = bpf_redirect_map(r1, r2, r3)
        _insn(0x95),  # return r0
    ])


def _libbpf() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        raise BpfError("libbpf not found: apt-get install libbpf1 (or libbpf-dev)") from None
    lib.bpf_map_create.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32,
                                   ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
    lib.bpf_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                                  ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_uint64]
    lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return lib


_lib: ctypes.CDLL | None = None


def libbpf() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = _libbpf()
    return _lib


def _check(result: int, what: str) -> int:
    if result < 0:
        err = -result  # libbpf 1.x returns -errno
        raise BpfError(f"{what}: {os.strerror(err)}")
    return result


class XskRedirect:
    """The redirect program attached to one interface, with its XSKMAP."""

    def __init__(self, iface: Interface, queues: int = 64) -> None:
        lib = libbpf()
        ifname = self.ifname = iface.name
        self.map_fd = self.prog_fd = self.link_fd = -1
        try:
            self.map_fd = _check(lib.bpf_map_create(BPF_MAP_TYPE_XSKMAP, b"pktflow_xsks", 4, 4,
                                                    queues, None),
                                 "cannot create the XSKMAP (needs root or CAP_BPF)")
            code = redirect_program(self.map_fd)
            self.prog_fd = _check(lib.bpf_prog_load(BPF_PROG_TYPE_XDP, PROGRAM_NAME.encode(),
                                                    b"Dual BSD/GPL", code, len(code) // 8, None),
                                  "the kernel refused the XDP program")
            with iface.netns.entered():  # an ifindex means something only in its namespace
                result = lib.bpf_link_create(self.prog_fd, iface.index, BPF_XDP, None)
            if result < 0:
                err = -result
                if err in (16, 17):  # EBUSY, EEXIST
                    raise BpfError(
                        f"{ifname} already has an XDP program (another NF or tool?): "
                        f"remove it with `ip link set dev {ifname} xdp off` or "
                        f"`xdp-loader unload {ifname} --all`, or use packet:{ifname}")
                if err == errno.ERANGE:  # the driver's XDP frame limit (a page, for veth)
                    raise BpfError(
                        f"cannot attach XDP to {ifname}: its MTU {iface.mtu} is above what "
                        f"XDP supports on this driver; lower it (`ip link set dev {ifname} "
                        f"mtu 1500`) or use packet:{ifname}")
                raise BpfError(f"cannot attach XDP to {ifname}: {os.strerror(err)}")
            self.link_fd = result
        except BaseException:
            self.close()
            raise

    def add_socket(self, queue: int, xsk_fd: int) -> None:
        key, value = ctypes.c_uint32(queue), ctypes.c_uint32(xsk_fd)
        _check(libbpf().bpf_map_update_elem(self.map_fd, ctypes.byref(key),
                                            ctypes.byref(value), 0),
               f"cannot add the AF_XDP socket of {self.ifname} queue {queue} to the XSKMAP")

    def remove_socket(self, queue: int) -> None:
        key = ctypes.c_uint32(queue)
        libbpf().bpf_map_delete_elem(self.map_fd, ctypes.byref(key))

    def close(self) -> None:
        """Detach (closing the link) and free the program and map."""
        for attr in ("link_fd", "prog_fd", "map_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)



def loaded_programs(name: str = PROGRAM_NAME) -> list[int]:
    """Ids of the BPF programs loaded anywhere in the kernel under `name` (pktflow's XDP
    program by default), so tests and tools can check that a run left none behind."""
    lib = libbpf()
    lib.bpf_prog_get_next_id.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
    lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_uint32)]
    found = []
    prog_id = ctypes.c_uint32(0)
    while lib.bpf_prog_get_next_id(prog_id.value, ctypes.byref(prog_id)) == 0:
        fd = lib.bpf_prog_get_fd_by_id(prog_id.value)
        if fd < 0:
            continue  # unloaded meanwhile
        try:
            size = BPF_PROG_INFO_NAME + 16
            info = ctypes.create_string_buffer(size)
            length = ctypes.c_uint32(size)
            if lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(length)) == 0:
                raw = info.raw[BPF_PROG_INFO_NAME:BPF_PROG_INFO_NAME + 16]
                if raw.split(b"\0")[0].decode(errors="replace") == name:
                    found.append(prog_id.value)
        finally:
            os.close(fd)
    return found
