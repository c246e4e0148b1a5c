"""kvmbox's exception types and the documented CLI exit statuses they map to."""
from __future__ import annotations

import errno as _errno

# Exit statuses of `kvmbox run` (env(1) / docker conventions).
EXIT_TIMEOUT = 124          # --timeout expired, as timeout(1)
EXIT_KVMBOX_FAILED = 125    # kvmbox itself failed (no /dev/kvm, bad option, stub bug)
EXIT_CANNOT_EXECUTE = 126   # the program exists but cannot be executed (not ELF, wrong arch, ...)
EXIT_NOT_FOUND = 127        # the program does not exist


class SyscallError(Exception):
    """Raised by syscall handlers (and the MemoryManager); the dispatcher turns it into -errno."""

    __slots__ = ("errno",)

    def __init__(self, err: int) -> None:
        self.errno = err

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return _errno.errorcode.get(self.errno, str(self.errno))


class KvmboxError(Exception):
    """A failure reported to the user as one line, with a documented exit status."""

    exit_status = EXIT_KVMBOX_FAILED


class ProgramNotFound(KvmboxError):
    exit_status = EXIT_NOT_FOUND
    errno = _errno.ENOENT           # what execve(2) returns for it


class CannotExecute(KvmboxError):
    """Not ELF, wrong architecture, truncated, absurd segments, no permission, a directory...

    `errno` is what execve(2) gives a program for it (ENOEXEC unless the raiser knows).
    """
    exit_status = EXIT_CANNOT_EXECUTE

    def __init__(self, message: str, *, err: int = _errno.ENOEXEC) -> None:
        super().__init__(message)
        self.errno = err


class PlatformUnavailable(KvmboxError):
    """/dev/kvm missing or not permitted, or the platform could not be set up."""
    exit_status = EXIT_KVMBOX_FAILED


class SandboxCrash(KvmboxError):
    """The guest stub misbehaved (ring-0 fault, unexpected exit): the sandbox is torn down."""
    exit_status = EXIT_KVMBOX_FAILED
