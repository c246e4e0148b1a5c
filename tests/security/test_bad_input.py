"""Bad input to `kvmbox run` and `kvmbox info`: one clear line on stderr and a distinct exit status, never a traceback."""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

import helpers


@pytest.fixture
def tmp_path():
    """A scratch directory the sandbox can see (its /tmp is a tmpfs of its own, so not under /tmp)."""
    d = Path(tempfile.mkdtemp(prefix="kvmbox-bad-input-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(args, **kw):
    proc = helpers.run_cli(["run", *args], **kw)
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    return proc.returncode, err.strip()


def _exe(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(0o755)
    return str(p)


def _elf_header(ei_class=2, ei_data=1, machine=62, e_type=2, phnum=0) -> bytes:
    ident = b"\x7fELF" + bytes([ei_class, ei_data, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0x401000, 64, 0, 0, 64, 56,
                               phnum, 64, 0, 0)


def test_missing_program(tmp_path, kvm_available):
    code, err = _run([str(tmp_path / "nope")])
    assert code == 127 and err.count("\n") == 0 and "no such file" in err


def test_missing_bare_name(kvm_available):
    code, err = _run(["definitely-not-a-command-kvmbox"])
    assert code == 127 and "not found" in err


def test_directory(tmp_path, kvm_available):
    code, err = _run([str(tmp_path)])
    assert code == 126 and "is a directory" in err


def test_no_execute_permission(tmp_path, test_programs, kvm_available):
    if os.geteuid() == 0:
        # root may execute any file with at least one x bit; with none it is refused as for users.
        pass
    p = tmp_path / "hello"
    shutil.copy(test_programs / "glibc" / "hello", p)
    p.chmod(0o644)
    code, err = _run([str(p)])
    assert code == 126 and "permission denied" in err


@pytest.mark.parametrize("name,data,words", [
    ("text", b"plain text, no #! line\n" * 3, "not an ELF"),     # scripts run: tests/real/test_scripts.py
    ("empty", b"", "exec format"),
    ("elf32", _elf_header(ei_class=1), "32-bit"),
    ("bigendian", _elf_header(ei_data=2), "endian"),
    ("aarch64", _elf_header(machine=183), "aarch64"),
    ("relocatable", _elf_header(e_type=1), "ET_REL"),
    ("truncated_header", _elf_header()[:40], "truncated"),
])
def test_not_a_runnable_elf(tmp_path, name, data, words, kvm_available):
    code, err = _run([_exe(tmp_path, name, data)])
    assert code == 126, err
    assert len(err.splitlines()) == 1 and words.lower() in err.lower(), err


def test_truncated_real_program(tmp_path, test_programs, kvm_available):
    data = (test_programs / "glibc" / "hello").read_bytes()
    code, err = _run([_exe(tmp_path, "cut", data[:len(data) // 3])])
    assert code == 126 and len(err.splitlines()) == 1, err


def test_absurd_segment(tmp_path, kvm_available):
    hdr = bytearray(_elf_header(phnum=1))
    # PT_LOAD with filesz > memsz, far beyond the file
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x10000000, 0x1000, 0x1000)
    code, err = _run([_exe(tmp_path, "absurd", bytes(hdr) + ph + bytes(64))])
    assert code == 126 and len(err.splitlines()) == 1, err


def test_overlapping_segments(tmp_path, kvm_available):
    hdr = _elf_header(phnum=2)
    ph1 = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x100, 0x3000, 0x1000)
    ph2 = struct.pack("<IIQQQQQQ", 1, 6, 0, 0x401000, 0x401000, 0x100, 0x3000, 0x1000)
    code, err = _run([_exe(tmp_path, "overlap", hdr + ph1 + ph2 + bytes(0x200))])
    assert code == 126 and "overlap" in err, err


def test_dynamic_executable_runs(kvm_available):
    code, err = _run(["/bin/true"])
    assert code == 0 and err == "", err


def test_missing_kvm_device(test_programs):
    """--platform kvm with no usable device: one line, status 125."""
    code, err = _run(["--platform", "kvm", "--kvm-device", "/nonexistent/kvm",
                      str(test_programs / "glibc" / "hello")])
    assert code == 125 and "/nonexistent/kvm" in err and len(err.splitlines()) == 1, err


def test_auto_falls_back_to_ptrace_without_kvm(test_programs):
    """The default platform (auto) runs on ptrace when /dev/kvm is missing, and says so once."""
    proc = helpers.run_cli(["run", "--kvm-device", "/nonexistent/kvm", "--debug",
                            str(test_programs / "glibc" / "hello")])
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout == helpers.run_native(test_programs / "glibc" / "hello").stdout
    notices = [ln for ln in err.splitlines() if "unavailable" in ln]
    assert len(notices) == 1 and "ptrace" in notices[0]
    assert "platform ptrace" in err


def test_info_without_kvm_reports_ptrace():
    """`kvmbox info` where /dev/kvm is missing: the ptrace platform `run` would use, status 0,
    and why KVM is out on one line of stderr (it once failed with status 125)."""
    proc = helpers.run_cli(["info", "--kvm-device", "/nonexistent/kvm"])
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert out.splitlines()[:2] == ["platform: ptrace", "flavour:  ptrace-sysemu"], out
    assert len(err.splitlines()) == 1, err
    assert "/nonexistent/kvm does not exist" in err and "using the ptrace platform" in err, err


def test_bad_option_and_bad_size(test_programs):
    code, err = _run(["--no-such-option", "x"])
    assert code == 125 and len(err.splitlines()) == 1
    code, err = _run(["--memory", "lots", str(test_programs / "glibc" / "hello")])
    assert code == 125 and "size" in err


def test_api_raises_typed_errors(tmp_path, kvm_available):
    import kvmbox
    with kvmbox.Sandbox() as sb:
        with pytest.raises(kvmbox.ProgramNotFound):
            sb.run([str(tmp_path / "missing")])
        with pytest.raises(kvmbox.CannotExecute):
            sb.run([_exe(tmp_path, "t", b"not elf")])
    with pytest.raises(kvmbox.PlatformUnavailable):
        kvmbox.Sandbox(platform="kvm", kvm_device="/nonexistent/kvm")
    with kvmbox.Sandbox(kvm_device="/nonexistent/kvm") as sb:
        assert sb.platform_name == "ptrace" and len(sb.setup_notices) == 1


# --- PT_INTERP by binfmt_elf's rules: compared with native through execve(2) ---------------
_LDSO = b"/lib64/ld-linux-x86-64.so.2"
_EXECV = ("import os, sys\n"
          "try:\n    os.execv(sys.argv[1], [sys.argv[1]])\n"
          "except OSError as e:\n    print('execv errno', e.errno)\n")


def _with_interp_segment(elf: bytes, payload: bytes, *, filesz: int | None = None,
                         second: bool = False) -> bytes:
    """`elf` with its PT_INTERP (or, with second=True, a later header turned into a second
    PT_INTERP) reading `payload` appended at the end of the file.  p_vaddr is kept: ld.so
    reads the path from memory there, the kernel from p_offset."""
    data = bytearray(elf)
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    kinds = [struct.unpack_from("<I", data, phoff + 56 * i)[0] for i in range(phnum)]
    first = kinds.index(3)
    i = first if not second else next(i for i in range(first + 1, phnum) if kinds[i] == 4)  # a PT_NOTE
    at = phoff + 56 * i
    struct.pack_into("<I", data, at, 3)
    struct.pack_into("<Q", data, at + 8, len(data))                          # p_offset
    struct.pack_into("<Q", data, at + 32, len(payload) if filesz is None else filesz)
    return bytes(data + payload)


@pytest.mark.parametrize("name,payload,filesz,second", [
    ("nul_padded", _LDSO + b"\0" * 100, None, False),
    ("text_after_nul", _LDSO + b"\0not a path\0", None, False),
    ("not_nul_terminated", _LDSO + b"\0xy", None, False),
    ("empty_path", b"\0\0", None, False),                   # the cwd: a directory, EACCES
    ("relative_path", _LDSO[1:] + b"\0", None, False),        # from the cwd (here /)
    ("one_byte", b"\0", None, False),
    ("longer_than_path_max", _LDSO + b"\0" * 4096, None, False),
    ("past_end_of_file", _LDSO + b"\0", 64, False),
    ("second_interp_ignored", b"garbage without a nul", None, True),
])
def test_pt_interp_as_linux_reads_it(name, payload, filesz, second, tmp_path, test_programs, sandbox):
    exe = _exe(tmp_path, name, _with_interp_segment(
        (test_programs / "dynamic" / "hello").read_bytes(), payload, filesz=filesz, second=second))
    native = helpers.run_native("/usr/bin/python3", ["-c", _EXECV, exe], cwd="/")
    boxed = helpers.run_sandbox("/usr/bin/python3", ["-c", _EXECV, exe], sandbox=sandbox, cwd="/")
    helpers.assert_same_outcome(native, boxed, what=f"execv of a PT_INTERP {name}")
    if name == "nul_padded":
        assert b"execv errno" not in native.stdout
        direct = helpers.run_sandbox(exe, sandbox=sandbox)
        helpers.assert_same_outcome(helpers.run_native(exe), direct, what="PT_INTERP nul_padded")
