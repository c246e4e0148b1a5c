"""Fixtures shared by the KVM-only platform tests: a KVM platform per module, and guests on it."""
from __future__ import annotations

import pytest
from guest import guest_factory, platform_fixture


@pytest.fixture(scope="module")
def kvm_platform():
    yield from platform_fixture("kvm", 256 << 20)


@pytest.fixture
def kvm_guest(kvm_platform):
    yield from guest_factory(kvm_platform)
