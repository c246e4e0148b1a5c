"""Fixtures of the security tests: the host layout the escape programs run against."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from security.escape_harness import SCRATCH, Layout, make_layout


@pytest.fixture
def layout(test_programs) -> Layout:
    """A fresh escape_harness layout under .test-scratch, removed afterwards."""
    SCRATCH.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="escape-", dir=SCRATCH))
    try:
        yield make_layout(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
