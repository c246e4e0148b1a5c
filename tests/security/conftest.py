"""Fixtures of the security tests: the host layout the escape programs run against."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from security.escape_harness import SCRATCH, Launch, Layout, make_layout


@pytest.fixture
def layout(test_programs) -> Layout:
    """A fresh escape_harness layout under .test-scratch, removed afterwards."""
    SCRATCH.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="escape-", dir=SCRATCH))
    try:
        yield make_layout(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=[0, 1, 2], ids=["direct", "forked-child", "child-of-child"])
def launch(request, test_programs, layout) -> Launch:
    """Each escape program runs as the first process, then again from a forked child and
    from a child of a child (issue 8).  forkrun goes into the rootfs now, before a test
    takes its snapshot of the host."""
    return Launch(request.param, test_programs, layout)
