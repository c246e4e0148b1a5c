"""The Platform interface declares what the Sentry uses of a platform, and both platforms fill it."""
from __future__ import annotations

import pytest

from kvmbox.platform.base import Platform
from kvmbox.platform.kvm.platform import KvmPlatform
from kvmbox.platform.ptrace.platform import PtracePlatform


def test_platform_declares_what_the_sentry_uses():
    for name in ("memfile", "frames", "user_range"):
        assert isinstance(getattr(Platform, name), property), name
    assert {"user_range", "new_address_space", "new_context", "close"} <= Platform.__abstractmethods__


@pytest.mark.parametrize("cls", [KvmPlatform, PtracePlatform])
def test_both_platforms_implement_all_of_it(cls):
    assert cls.__abstractmethods__ == frozenset()


def test_a_platform_hands_out_its_memfile_and_frames():
    p = PtracePlatform(16 << 20)
    try:
        assert p.memfile is not None and p.frames.memfile is p.memfile
    finally:
        p.close()
    assert p.memfile is None
