"""Builds a Kernel's mount table from the sandbox's file-system options.

    /          overlay: the host rootfs (default the host's /) read-only, a tmpfs upper
    /proc      procfs (generated from Sentry state)
    /dev       devfs, with a tmpfs on /dev/shm
    /sys       a read-only tmpfs with the CPU files (fsimpl/sysfs.py; the host's /sys never shows)
    /tmp       with --rootfs: an empty tmpfs; with the host's / as root: the host's /tmp,
               read-only, under the same in-memory overlay as the rest of /
    user mounts: host directories passed through at their guest paths, ro or rw
               (nosuid,nodev; shown in /proc/self/mountinfo as gVisor shows gofer
               mounts, fstype 9p and source "none", never the host path)

Every tmpfs (the overlay's upper, /dev/shm, /sys, /tmp) shares one FsSpace of the
sandbox's memory limit (vfs/space.py).

/proc, /dev, /sys (and /tmp under --rootfs) are opaque directories of the overlay,
so the host's own contents there cannot show even under a mount that is later covered.

Departure from the issue's "tmpfs for /tmp", on purpose: with the default root,
programs and data that users keep under the host's /tmp (a freshly built a.out, a
checkout, pytest's tmp_path) must stay reachable, as under `runsc do`.  Writes to
/tmp still land in memory (the overlay's tmpfs upper) and never reach the host;
the host's /tmp is no more exposed than the rest of the host root already is.
"""
from __future__ import annotations

import errno
import os

from kvmbox.errors import KvmboxError, SyscallError
from kvmbox.record import field, record
from kvmbox.sentry.fsimpl.host import HostFilesystem
from kvmbox.sentry.fsimpl.overlay import OverlayFs
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.vfs.path import MountTable
from kvmbox.sentry.vfs.space import FsSpace

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from kvmbox.sentry.kernel import Kernel

FIRST_DEV = 0x20          # st_dev of the first file system (anonymous block devices 0:NN)


@record
class MountSpec:
    """A host directory `host` seen at guest path `guest`; `chown`: the guest may give
    files there to other owners (otherwise EPERM: see fsimpl/host.py)."""
    host: str
    guest: str
    readonly: bool = True
    chown: bool = False


@record
class FsOptions:
    """What the sandbox's file system is made of."""
    rootfs: str | None = None                   # host directory used as / (None: the host's /)
    mounts: list[MountSpec] = field(default_factory=list)


class _Devs:
    """Hands out the st_dev numbers of one Kernel's file systems."""

    def __init__(self) -> None:
        self._next = FIRST_DEV

    def __call__(self) -> int:
        dev = self._next
        self._next += 1
        return dev


def check_options(opts: FsOptions) -> None:
    """KvmboxError (one line) for options that cannot work."""
    if opts.rootfs is not None and not os.path.isdir(opts.rootfs):
        raise KvmboxError(f"kvmbox: --rootfs {opts.rootfs}: not a directory")
    for m in opts.mounts:
        if not m.guest.startswith("/"):
            raise KvmboxError(f"kvmbox: --mount {m.host}:{m.guest}: the sandbox path must be absolute")
        if os.path.normpath(m.guest) == "/":
            raise KvmboxError(f"kvmbox: --mount {m.host}:{m.guest}: cannot mount over / "
                              "(use --rootfs)")
        if not os.path.isdir(m.host):
            raise KvmboxError(f"kvmbox: --mount {m.host}:{m.guest}: {m.host} is not a directory")
        if m.chown and m.readonly:
            raise KvmboxError(f"kvmbox: --mount {m.host}:{m.guest}: chown needs a read-write "
                              "mount (rw,chown)")


def build_mounts(kernel: "Kernel", opts: FsOptions) -> MountTable:
    """The mount table of a new Kernel (see the module docstring)."""
    from kvmbox.sentry.fsimpl.devfs import DevFilesystem
    from kvmbox.sentry.fsimpl.procfs import ProcFilesystem
    from kvmbox.sentry.fsimpl.sysfs import build_sysfs

    check_options(opts)
    memfile, frames = kernel.platform.memfile, kernel.platform.frames
    # One space for every in-memory file system, as large as the sandbox's memory.
    space = FsSpace.for_memory(getattr(kernel, "memory_limit", None), frames,
                               getattr(kernel, "memory_account", None))
    dev = _Devs()
    rootfs = os.path.abspath(opts.rootfs) if opts.rootfs is not None else "/"
    lower = HostFilesystem(dev(), rootfs, readonly=True)
    upper = Tmpfs(dev(), memfile, frames, mode=0o755, space=space)
    overlay = OverlayFs(dev(), lower, upper)
    table = MountTable(overlay, source="overlay")
    top = overlay.root
    own_tmp = opts.rootfs is not None or not os.path.isdir("/tmp")
    for name, mode in (("proc", 0o555), ("dev", 0o755), ("sys", 0o555), ("tmp", 0o1777)):
        if name != "tmp" or own_tmp:
            top.opaque_dir(name, mode)
    table.mount("/proc", ProcFilesystem(kernel, dev()), source="proc")
    table.mount("/dev", DevFilesystem(kernel, dev()), source="devtmpfs")
    table.mount("/dev/shm", Tmpfs(dev(), memfile, frames, mode=0o1777, space=space),
                source="tmpfs")
    table.mount("/sys", build_sysfs(dev(), memfile, frames, kernel.cpu_count, space=space),
                readonly=True, source="none")
    if own_tmp:
        table.mount("/tmp", Tmpfs(dev(), memfile, frames, mode=0o1777, space=space), source="tmpfs")
    for m in opts.mounts:
        guest = os.path.normpath(m.guest)
        try:
            make_dirs(table, guest)
            fs = HostFilesystem(dev(), os.path.abspath(m.host), readonly=m.readonly,
                                allow_chown=m.chown)
            table.mount(guest, fs, readonly=m.readonly, source="none")   # never the host path
        except SyscallError as e:
            raise KvmboxError(f"kvmbox: --mount {m.host}:{m.guest}: {os.strerror(e.errno)}") from None
    return table


def make_dirs(table: MountTable, path: str) -> None:
    """mkdir -p `path` (absolute, canonical) in whatever file systems it crosses."""
    root = table.root()
    loc = root
    for name in path.split("/"):
        if not name:
            continue
        try:
            loc = table.resolve(loc, name, root=root)
        except SyscallError as e:
            if e.errno != errno.ENOENT:
                raise
            node = loc.node.mkdir(name, 0o755, os.getuid(), os.getgid())
            loc = table.child(loc, name, node)
        if not loc.node.is_dir():
            raise SyscallError(errno.ENOTDIR)


def close_mounts(table: MountTable) -> None:
    """Release the host fds the table's file systems hold (Kernel.close)."""
    for m in table.mounts():
        fs = m.fs
        for part in (fs, getattr(fs, "lower", None)):
            close = getattr(part, "close", None)
            if close is not None:
                close()
