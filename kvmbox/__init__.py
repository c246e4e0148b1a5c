"""kvmbox: run unmodified x86-64 Linux programs behind a KVM wall, with a kernel written in Python."""
from kvmbox.platform.ptrace.host import reserve_stub_page as _reserve_stub_page

# First thing, before any guest memory or library mapping can take its address: the ptrace
# platform's stub code page, kept for the process's whole life (platform/ptrace/host.py).
_reserve_stub_page()

from kvmbox.errors import (CannotExecute, KvmboxError, PlatformUnavailable,  # noqa: E402
                           ProgramNotFound, SandboxCrash)
from kvmbox.sandbox import Result, Sandbox  # noqa: E402

__all__ = ["Sandbox", "Result", "KvmboxError", "ProgramNotFound", "CannotExecute",
           "PlatformUnavailable", "SandboxCrash"]
__version__ = "0.1.0"
