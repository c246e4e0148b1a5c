"""FdTable numbering and Linux's fd-table growth, which select(2) exposes."""
from __future__ import annotations

import errno
import select as host_select
import struct
from types import SimpleNamespace

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.files import FD_TABLE_INITIAL, FdTable, FileDescription, fd_table_size_for
from kvmbox.sentry.syscalls import sys_poll
from tests.unit.test_handlers import FakeMM, BASE


class Ready(FileDescription):
    """Always readable."""

    readable = True

    def poll(self, events: int) -> int:
        return events & host_select.POLLIN


@pytest.mark.parametrize("fd,size", [(0, 128), (63, 128), (64, 128), (127, 128), (128, 256),
                                     (255, 256), (256, 512), (300, 512), (1023, 1024),
                                     (1024, 2048)])
def test_growth_matches_linux_expand_fdtable(fd, size):
    # alloc_fdtable(): nr /= 128; nr = roundup_pow_of_two(nr + 1); nr *= 128
    assert fd_table_size_for(fd) == size


def test_capacity_starts_at_64_and_only_grows():
    table = FdTable()
    assert table.capacity == FD_TABLE_INITIAL == 64
    f = Ready()
    table.install(3, f)
    assert table.capacity == 64
    table.install(200, f)
    assert table.capacity == 256
    table.close(200)
    assert table.capacity == 256          # Linux never shrinks a table


def test_alloc_is_lowest_free_and_emfile_at_limit():
    table = FdTable()                  # the limit is the caller's RLIMIT_NOFILE
    f = Ready()
    assert [table.alloc(f, limit=3) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(SyscallError) as ei:
        table.alloc(f, limit=3)
    assert ei.value.errno == errno.EMFILE
    table.close(1)
    assert table.alloc(f, limit=3) == 1


def _select(task, nfds: int, fds: list[int]) -> tuple[int, int]:
    mask = 0
    for fd in fds:
        mask |= 1 << fd
    task.mm.copy_out(BASE, mask.to_bytes(256, "little"))
    n = sys_poll.do_select(task, nfds, BASE, 0, 0, 0)
    return n, int.from_bytes(task.mm.copy_in(BASE, 256), "little")


def test_select_ignores_bits_past_the_table_and_rejects_closed_fds_inside_it():
    task = SimpleNamespace(fds=FdTable(), mm=FakeMM(), rlimits={7: (1024, 1024)})
    task.fds.install(5, Ready())
    assert _select(task, 6, [5]) == (1, 1 << 5)
    # fd 100 lies past a 64-slot table: Linux truncates nfds, ignores the bit
    # and writes back only the words it read, so the guest's bit stays set
    assert _select(task, 101, [5, 100]) == (1, 1 << 5 | 1 << 100)
    # fd 40 is inside the table and closed: EBADF
    with pytest.raises(SyscallError) as ei:
        _select(task, 41, [5, 40])
    assert ei.value.errno == errno.EBADF
    # once the table has grown past 100, the same closed fd 100 is an error
    task.fds.install(150, Ready())
    task.fds.close(150)
    with pytest.raises(SyscallError) as ei:
        _select(task, 101, [5, 100])
    assert ei.value.errno == errno.EBADF


def test_in_memory_stdin_polls_as_a_pipe_whose_writer_closed():
    from kvmbox.abi.poll import POLLHUP, POLLIN, POLLRDNORM
    from kvmbox.sentry.files import BytesInput
    f = BytesInput(b"abc")
    assert f.poll(POLLIN) == POLLIN | POLLRDNORM | POLLHUP and f.readable_bytes() == 3
    assert f.read(10) == b"abc"
    assert f.poll(POLLIN) == POLLHUP and f.readable_bytes() == 0     # EOF: hang-up only
