"""Starting sandboxes: any --memory size, many Sandboxes of both platforms alive in one
process, the ptrace stub page reserved for the process's life, and failures inside run()
as one-line KvmboxErrors."""
from __future__ import annotations

import subprocess
import sys

import pytest

import helpers
import kvmbox
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import host


@pytest.mark.parametrize("memory", ["600G", "4T"])
def test_ptrace_starts_whatever_the_memory_size(memory):
    """The Sentry's mapping of a huge MemoryFile once took the stub's address (6 starts in 8
    failed with 600G: 'cannot map the ptrace stub page ... (File exists)')."""
    for _ in range(6):
        proc = helpers.run_cli(["run", "--platform", "ptrace", "--memory", memory, "/bin/true"])
        assert (proc.returncode, proc.stderr) == (0, b"")


def test_twenty_sandboxes_of_both_platforms_alive_at_once(test_programs):
    hello = str(test_programs / "musl" / "hello")
    native = helpers.run_native(hello)
    names = ["ptrace", "kvm"] if helpers.kvm_usable() else ["ptrace"]
    boxes = []
    try:
        for i in range(20):
            boxes.append(kvmbox.Sandbox(platform=names[i % len(names)], memory="1G"))
        for sb in boxes + boxes[::-1]:
            r = sb.run([hello])
            assert (r.exit_code, r.stdout) == (0, native.stdout), sb.platform_name
    finally:
        for sb in boxes:
            sb.close()


def test_stub_page_is_reserved_from_import():
    """Nothing can map over it once kvmbox is imported; a later platform uses it as it is."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    page = host.stub_page()
    got = libc.mmap(page, L.PAGE_SIZE, 3, 0x22 | 0x100000, -1, 0)   # MAP_FIXED_NOREPLACE
    assert got == ctypes.c_void_p(-1).value and ctypes.get_errno() == 17     # EEXIST


_TAKEN_FIRST = """
import ctypes, mmap, sys
sys.path.insert(0, sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long)
# Something (a library, a big buffer) holds the preferred address before kvmbox is imported.
assert libc.mmap(0x7f8000000000, 1 << 20, 3, 0x22 | 0x100000, -1, 0) == 0x7f8000000000
import kvmbox
from kvmbox.platform.ptrace import host
with kvmbox.Sandbox(platform="ptrace") as sb:
    r = sb.run([sys.argv[2]])
print(hex(host.stub_page()), r.exit_code, r.stdout.decode().strip())
"""


def test_stub_page_moves_when_its_address_was_taken_before_import(test_programs):
    hello = str(test_programs / "musl" / "hello")
    proc = subprocess.run([sys.executable, "-c", _TAKEN_FIRST, str(helpers.REPO), hello],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    page, code, text = proc.stdout.decode().split(" ", 2)
    assert int(page, 16) >= L.USER_TOP + (1 << 20) and code == "0"
    assert text.strip() == helpers.run_native(hello).stdout.decode().strip()


def test_platform_failure_inside_run_is_a_one_line_kvmbox_error(test_programs, platform_name):
    hello = str(test_programs / "glibc" / "hello")
    with kvmbox.Sandbox(platform=platform_name) as sb:
        real = sb._platform.new_context

        def broken():
            ctx = real()

            def switch(aspace):
                raise OSError(5, "PTRACE_SYSEMU: Input/output error\nsecond line")
            ctx.switch = switch
            return ctx
        sb._platform.new_context = broken
        with pytest.raises(kvmbox.KvmboxError) as e:
            sb.run([hello])
        assert "\n" not in str(e.value) and "Input/output error" in str(e.value)
        sb._platform.new_context = real
        assert sb.run([hello]).exit_code == 0          # the sandbox is still usable
