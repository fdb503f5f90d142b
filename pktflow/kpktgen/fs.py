"""The engine served as files: a FUSE filesystem that looks and answers like /proc/net/pktgen.

`serve(PATH)` mounts `pgctrl`, `kpktgend_0..N-1` and one file per device at PATH. Reads
give the kernel's texts, writes go through the same parser and return the kernel's
errors; the filesystem is multithreaded, so a `start` written to pgctrl (which blocks
until the run ends, as in the kernel) does not hold up reads of the other files.

`serve(proc=True)` makes the files appear at /proc/net/pktgen for unmodified scripts, in
a private mount namespace (the rest of the system sees nothing). /proc/net is a symlink
to the task's own `self/net` and procfs refuses new entries, so the engine builds a
stand-in: a tmpfs with one bind mount per existing /proc/net entry (dev, route, ... keep
working) plus the FUSE mount at `pktgen`, and mounts a symlink to it over the /proc/net
symlink itself (open_tree + move_mount, which can mount onto a symlink). Everything is
unmounted on exit, error, SIGINT and SIGTERM; the private namespace dies with the process.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from pktflow.kpktgen.engine import SOCKETS, Engine, warm_up
from pktflow.kpktgen.params import ENOTSUPP

log = logging.getLogger("pktflow.kpktgen.fs")

PROC_NET = "/proc/net"
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 1 << 18
MNT_DETACH, UMOUNT_NOFOLLOW = 2, 8
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # x86_64 and aarch64 share these numbers
OPEN_TREE_CLONE, AT_SYMLINK_NOFOLLOW, AT_FDCWD = 1, 0x100, -100
MOVE_MOUNT_F_EMPTY_PATH = 4

_libc = ctypes.CDLL(None, use_errno=True)


class ServeError(RuntimeError):
    """The engine cannot be served (no FUSE, not root, a busy mount point...)."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise ServeError(f"{what}: {os.strerror(e)}")
    return ret


def _mount(src: str, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {src} on {dst}")


def _umount(path: str, flags: int = MNT_DETACH) -> bool:
    return _libc.umount2(path.encode(), flags) == 0


def enter_private_mount_namespace() -> None:
    """Move this thread (and what it starts later) into a mount namespace of its own whose
    mounts never propagate back, so /proc/net can be changed for it alone."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS) (needs root)")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)


class ProcNetStandIn:
    """A directory that shows what /proc/net shows plus an empty `pktgen` mount point, and
    the mount that puts it at /proc/net (call `activate` once pktgen is served)."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="pktflow-kpktgen-", dir="/run")
        self.mounted_tmpfs = False
        self.active = False
        try:
            _mount("tmpfs", self.base, "tmpfs", 0, "mode=0755")
            self.mounted_tmpfs = True
            net = os.path.join(self.base, "net")
            os.mkdir(net)
            # /proc/self/net resolves to this process's netns view, the one scripts read
            for name in sorted(os.listdir("/proc/self/net")):
                if name == "pktgen":
                    continue  # a kernel pktgen is shadowed by the engine
                src = f"/proc/self/net/{name}"
                dst = os.path.join(net, name)
                if os.path.isdir(src):
                    os.mkdir(dst)
                else:
                    open(dst, "w").close()
                _mount(src, dst, None, MS_BIND)
            self.pktgen = os.path.join(net, "pktgen")
            os.mkdir(self.pktgen, 0o755)
            self.link = os.path.join(self.base, "net-link")
            os.symlink(net, self.link)
        except BaseException:
            self.close()
            raise

    def activate(self) -> None:
        """Mount the symlink to the stand-in over the /proc/net symlink."""
        fd = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, self.link.encode(),
                                  OPEN_TREE_CLONE | AT_SYMLINK_NOFOLLOW), "open_tree")
        try:
            _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, PROC_NET.encode(),
                                 MOVE_MOUNT_F_EMPTY_PATH), f"move_mount onto {PROC_NET}")
        finally:
            os.close(fd)
        self.active = True

    def close(self) -> None:
        if self.active:
            _umount(PROC_NET, MNT_DETACH | UMOUNT_NOFOLLOW)
            self.active = False
        if self.mounted_tmpfs:
            _umount(self.base)  # detaches the binds below it too
            self.mounted_tmpfs = False
        try:
            os.rmdir(self.base)
        except OSError:
            pass


# ----------------------------------------------------------------------------- FUSE

def _fuse_errno(err: int) -> int:
    # FUSE replies carry errnos below 512 only; the kernel's ENOTSUPP (524) becomes the
    # nearest standard one.
    return errno.EOPNOTSUPP if err == ENOTSUPP else err


def make_operations(engine: Engine):  # noqa: ANN201 - mfusepy's Operations subclass
    """The FUSE callbacks over `engine` (one object per mount)."""
    import mfusepy

    interrupted = getattr(mfusepy._libfuse, "fuse_interrupted", None)  # noqa: SLF001

    def probe() -> bool:
        return bool(interrupted()) if interrupted is not None else False

    class PktgenOps(mfusepy.Operations):
        use_ns = True

        def __init__(self) -> None:
            self.handles: dict[int, list] = {}  # fh -> [name, snapshot text]
            self.next_fh = 1
            self._mutex = threading.Lock()
            self.t0 = time.time_ns()

        def _name(self, path: str) -> str:
            name = path.lstrip("/")
            if name == "pgctrl" or engine.thread(name) is not None \
                    or engine.device(name) is not None:
                return name
            raise mfusepy.FuseOSError(errno.ENOENT)

        def getattr(self, path: str, fh: int | None = None) -> dict:
            common = {"st_uid": 0, "st_gid": 0, "st_atime": self.t0, "st_mtime": self.t0,
                      "st_ctime": self.t0}
            if path == "/":
                return {"st_mode": stat.S_IFDIR | 0o555, "st_nlink": 2, **common}
            self._name(path)
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": 0, **common}

        def readdir(self, path: str, fh: int) -> list[str]:
            if path != "/":
                raise mfusepy.FuseOSError(errno.ENOTDIR)
            return [".", "..", "pgctrl", *engine.thread_names(), *engine.device_names()]

        def open(self, path: str, fi) -> int:  # noqa: ANN001 - raw fuse_file_info
            name = self._name(path)
            fi.direct_io = 1  # sizes are 0, as in procfs: reads must reach us regardless
            with self._mutex:
                fh = self.next_fh
                self.next_fh += 1
                self.handles[fh] = [name, None, False]  # name, snapshot, start pending
            fi.fh = fh
            return 0

        def read(self, path: str, size: int, offset: int, fi) -> bytes:  # noqa: ANN001
            h = self.handles.get(fi.fh)
            if h is None:
                raise mfusepy.FuseOSError(errno.EBADF)
            if offset == 0 or h[1] is None:
                try:
                    h[1] = engine.read(h[0]).encode("latin-1")
                except KeyError:
                    raise mfusepy.FuseOSError(errno.ENOENT) from None
            return h[1][offset:offset + size]

        def write(self, path: str, data: bytes, offset: int, fi) -> int:  # noqa: ANN001
            h = self.handles.get(fi.fh)
            if h is None:
                raise mfusepy.FuseOSError(errno.EBADF)
            name = h[0]
            try:
                # FUSE holds the file's inode lock during a write, so a `start` blocking here
                # would lock out the `stop` written to pgctrl by someone else: the wait for
                # the run's end happens at close (flush) instead, which holds no lock.
                starts = name == "pgctrl" and data[:-1] == b"start"
                err = engine.write(name, data, wait=False)
                if starts and not err:
                    h[2] = True
            except KeyError:
                raise mfusepy.FuseOSError(errno.ENODEV) from None
            except Exception:
                log.exception("write to %s failed", name)  # never take the engine down
                raise mfusepy.FuseOSError(errno.EIO) from None
            if err:
                raise mfusepy.FuseOSError(_fuse_errno(err))
            h[1] = None
            return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            self._name(path)
            return 0  # `echo cmd > file` opens with O_TRUNC; procfs ignores it too

        def flush(self, path: str, fi) -> int:  # noqa: ANN001
            h = self.handles.get(fi.fh)
            if h is not None and h[2]:
                h[2] = False
                # the writer of `start` returns when the run ends; a signal to it (FUSE
                # interrupt) stops the run, as in the kernel
                engine.wait_done(interrupted=probe)
            return 0

        def release(self, path: str, fi) -> int:  # noqa: ANN001
            self.handles.pop(fi.fh, None)
            return 0

        def statfs(self, path: str) -> dict:
            return {"f_bsize": 4096, "f_namemax": 255}

    return PktgenOps()


def _run_fuse(engine: Engine, mountpoint: str, failed: list[BaseException]) -> None:
    import mfusepy

    try:
        mfusepy.FUSE(make_operations(engine), mountpoint, raw_fi=True, foreground=True,
                     nothreads=False, fsname="pktflow-kpktgen", subtype="pktgen",
                     intr=True, allow_other=True, max_threads=32)
    except BaseException as e:  # noqa: BLE001 - reported by the serving thread
        failed.append(e)


def _wait_mounted(mountpoint: str, thread: threading.Thread, failed: list[BaseException],
                  timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if failed or not thread.is_alive():
            why = failed[0] if failed else "the FUSE loop ended"
            raise ServeError(f"cannot mount the engine at {mountpoint}: {why} (is /dev/fuse "
                             "there and are we root?)")
        if time.monotonic() > deadline:
            raise ServeError(f"the engine did not appear at {mountpoint} within {timeout:.0f}s")
        time.sleep(0.02)


def serve(mountpoint: str | None = None, *, proc: bool = False, threads: int | None = None,
          command: Sequence[str] | None = None, socket_kind: str = "auto",
          on_ready: Callable[[str], None] | None = None) -> int:
    """Serve a fresh engine at `mountpoint` (or /proc/net/pktgen in a private mount namespace
    when `proc`); run `command` there and return its exit status, or serve until SIGINT or
    SIGTERM (then 0). Call from the main thread: it installs signal handlers."""
    if os.geteuid() != 0:
        raise ServeError("serving the engine needs root (FUSE mount, raw sockets)")
    if not os.path.exists("/dev/fuse"):
        raise ServeError("/dev/fuse is missing: load the fuse module (modprobe fuse)")
    if not proc and not mountpoint:
        raise ServeError("give a directory to serve at (--dir PATH) or --proc")
    cwd = os.getcwd()  # libfuse changes directory to / when it starts; the command must not
    engine = Engine(threads, socket_kind)
    warm_up()
    stop = threading.Event()
    signals = {signal.SIGINT: 0, signal.SIGTERM: 0, signal.SIGHUP: 0}
    child: list[subprocess.Popen] = []

    def on_signal(signum: int, frame: object) -> None:
        signals[signum] += 1
        # A run in progress ends with its results (like the kernel's interrupted start);
        # without a command, or on SIGTERM/SIGHUP or a second SIGINT, serving ends too.
        threading.Thread(target=engine.stop, daemon=True).start()
        if not child or signum != signal.SIGINT or signals[signum] > 1:
            stop.set()
            if child and child[0].poll() is None:
                child[0].terminate()

    old = {s: signal.signal(s, on_signal) for s in signals}  # before libfuse looks at them
    # libfuse signals a request's thread with SIGUSR1 when its caller is interrupted; the
    # default action would kill us, a handler just lets fuse_interrupted() say so
    old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    stand_in: ProcNetStandIn | None = None
    made_dir = False
    failed: list[BaseException] = []
    fuse_thread: threading.Thread | None = None
    target = ""
    try:
        if proc:
            enter_private_mount_namespace()
            stand_in = ProcNetStandIn()
            target = stand_in.pktgen
        else:
            target = os.path.abspath(mountpoint or "")
            if os.path.ismount(target):
                raise ServeError(f"{target} is already a mount point: unmount it or pick "
                                 "another --dir")
            if os.path.lexists(target) and not os.access(target, os.F_OK):
                raise ServeError(f"{target} is a dead mount (its server died): "
                                 f"umount -l {target}")
            if not os.path.isdir(target):
                os.makedirs(target)
                made_dir = True
            elif os.listdir(target):
                raise ServeError(f"{target} is not empty: serve at an empty directory")
        fuse_thread = threading.Thread(target=_run_fuse, args=(engine, target, failed),
                                       name="kpktgen-fuse", daemon=True)
        fuse_thread.start()
        _wait_mounted(target, fuse_thread, failed)
        where = target
        if stand_in is not None:
            stand_in.activate()
            where = f"{PROC_NET}/pktgen"
        log.info("kpktgen engine at %s (%d threads)", where, len(engine.threads))
        if on_ready is not None:
            on_ready(where)
        if command:
            try:
                child.append(subprocess.Popen(list(command), cwd=cwd))
            except OSError as e:
                raise ServeError(f"cannot run {command[0]}: {e.strerror}") from None
            while True:
                try:
                    return child[0].wait()
                except KeyboardInterrupt:  # pragma: no cover - handlers replace it
                    continue
        print(f"pktflow kpktgen: engine serving at {where}; Ctrl-C stops", file=sys.stderr,
              flush=True)
        while not stop.is_set():
            stop.wait(0.5)
        return 0
    finally:
        engine.close()
        if child and child[0].poll() is None:
            child[0].terminate()
            try:
                child[0].wait(5)
            except subprocess.TimeoutExpired:
                child[0].kill()
        if stand_in is not None:
            stand_in.close()  # the /proc/net mount first: nothing may reach pktgen after
        if fuse_thread is not None and target:
            _umount(target)
            fuse_thread.join(5)
        if made_dir and not os.path.ismount(target):
            shutil.rmtree(target, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------- CLI

def register_serve(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` to the `pktflow kpktgen` subcommands."""
    p = subparsers.add_parser(
        "serve", help="serve pktflow's userspace pktgen engine as /proc/net/pktgen-like files",
        description="Mount the engine (FUSE) at --dir, or at /proc/net/pktgen in a private "
        "mount namespace with --proc; run COMMAND there (then unmount) or serve until Ctrl-C. "
        "Example: pktflow kpktgen serve --proc -- ./pktgen_sample01_simple.sh -i veth0 "
        "-m 02:00:00:00:00:01 -n 1000. One engine per network namespace: run it under "
        "`ip netns exec NS` (whose mount namespace is its own: use --proc or COMMAND) or "
        "`nsenter --net=/run/netns/NS` (keeps the caller's mounts, for --dir).")
    p.add_argument("--dir", dest="serve_dir", metavar="PATH",
                   help="directory to mount the files at (created if missing)")
    p.add_argument("--proc", action="store_true",
                   help="appear at /proc/net/pktgen (private mount namespace; needs root)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="kpktgend threads (default: one per CPU)")
    p.add_argument("--socket", choices=SOCKETS, default="auto",
                   help="transmit socket: AF_XDP when possible (auto), or force one")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="command to run with the files in place")
    p.set_defaults(func=serve_main)


def serve_main(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if args.threads is not None and args.threads < 1:
        print("kpktgen serve: --threads must be at least 1", file=sys.stderr)
        return 2
    if not args.proc and not args.serve_dir:
        print("kpktgen serve: give --dir PATH or --proc", file=sys.stderr)
        return 2
    try:
        return serve(args.serve_dir, proc=args.proc, threads=args.threads,
                     command=command or None, socket_kind=args.socket)
    except ServeError as e:
        print(f"kpktgen serve: {e}", file=sys.stderr)
        return 1


__all__ = ["ProcNetStandIn", "ServeError", "enter_private_mount_namespace", "make_operations",
           "register_serve", "serve", "serve_main"]
