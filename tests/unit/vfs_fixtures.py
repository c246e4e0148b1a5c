"""Shared pieces of the VFS unit tests: a real MemoryFile + FrameAllocator, tmpfs and mount tables."""
from __future__ import annotations

import pytest

from kvmbox.mm.frames import FrameAllocator
from kvmbox.mm.memfile import MemoryFile
from kvmbox.sentry.fsimpl.tmpfs import Tmpfs
from kvmbox.sentry.vfs.path import MountTable

MIB = 1 << 20


class Creds:
    def __init__(self, uid: int = 1000, gid: int = 1000) -> None:
        self.uid = self.euid = uid
        self.gid = self.egid = gid


@pytest.fixture
def mem():
    mf = MemoryFile(16 * MIB)
    fa = FrameAllocator(mf, table_reserve=MIB)
    yield mf, fa
    mf.close()


@pytest.fixture
def tmpfs(mem):
    mf, fa = mem
    return Tmpfs(1, mf, fa)


@pytest.fixture
def table(tmpfs):
    return MountTable(tmpfs)
