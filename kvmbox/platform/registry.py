"""The platform registry: open a trap mechanism by name ('kvm', 'ptrace', or 'auto')."""
from __future__ import annotations

from collections.abc import Callable

from kvmbox.errors import PlatformUnavailable
from kvmbox.platform.base import Platform

NAMES = ("auto", "kvm", "ptrace")
DEFAULT_DEVICE = "/dev/kvm"


def open_platform(name: str, memory: int, device: str = DEFAULT_DEVICE,
                  notice: Callable[[str], None] | None = None) -> Platform:
    """'kvm', 'ptrace', or 'auto': kvm when `device` opens, else ptrace with a one-line notice.

    Only 'kvm' makes an unusable device an error; 'auto' always has somewhere to go.
    """
    if name == "kvm":
        from kvmbox.platform.kvm.platform import KvmPlatform
        return KvmPlatform(memory, device=device)
    if name == "ptrace":
        from kvmbox.platform.ptrace.platform import PtracePlatform
        return PtracePlatform(memory)
    if name == "auto":
        from kvmbox.platform.kvm.platform import KvmPlatform
        try:
            return KvmPlatform(memory, device=device)
        except PlatformUnavailable as e:
            reason = str(e).removeprefix("kvmbox: ")
        from kvmbox.platform.ptrace.platform import PtracePlatform
        platform = PtracePlatform(memory)
        if notice is not None:
            notice(f"kvmbox: {device} unavailable ({reason}); using the ptrace platform")
        return platform
    raise PlatformUnavailable(f"kvmbox: unknown platform {name!r} (available: {', '.join(NAMES)})")
