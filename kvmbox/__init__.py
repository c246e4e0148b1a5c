"""kvmbox: run unmodified x86-64 Linux programs behind a KVM wall, with a kernel written in Python."""
from kvmbox.errors import (CannotExecute, KvmboxError, PlatformUnavailable, ProgramNotFound,
                           SandboxCrash)
from kvmbox.sandbox import Result, Sandbox

__all__ = ["Sandbox", "Result", "KvmboxError", "ProgramNotFound", "CannotExecute",
           "PlatformUnavailable", "SandboxCrash"]
__version__ = "0.1.0"
