"""The host's python3 reading an LZMA zip member written with a 64 MiB dictionary (xz -9,
7-Zip -mx=9), natively and in the sandbox on each platform.

liblzma's decoder mallocs the dictionary (64 MiB + 4 KiB, an mmap just past the
eager-population limit), first writes its last byte, and frees it after each
member, so each member maps the same range again and faults on its last page
first: the sandbox once killed the 4th member with SIGSEGV "not mapped" (issue 7 §0).
"""
from __future__ import annotations

import shutil

from helpers import TEST_ENV, assert_same_outcome, run_native, run_sandbox

# Written natively: zipfile with its LZMA compressor given a 64 MiB dictionary.
MAKE_ZIP = r"""
import lzma, sys, zipfile
class Big(zipfile.LZMACompressor):
    def _init(self):
        props = lzma._encode_filter_properties({"id": lzma.FILTER_LZMA1, "dict_size": 64 << 20})
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[
            lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)])
        return zipfile.struct.pack("<BBH", 9, 4, len(props)) + props
zipfile.LZMACompressor = Big
with zipfile.ZipFile(sys.argv[1], "w", compression=zipfile.ZIP_LZMA) as z:
    for i in range(8):
        z.writestr("m%d.bin" % i, bytes(range(256)) * (40 * (i + 1)) + b"member %d" % i)
"""

READ_ZIP = r"""
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        data = z.read(info)
        print(info.filename, info.compress_type, len(data), hashlib.sha256(data).hexdigest())
"""


def _python() -> str:
    path = shutil.which("python3", path=TEST_ENV["PATH"])
    assert path, "python3 is not installed on this host"
    return path


def test_zipfile_reads_lzma_members_with_a_64m_dictionary(tmp_path, sandbox):
    py = _python()
    archive = tmp_path / "big.zip"
    made = run_native(py, ["-c", MAKE_ZIP, str(archive)], timeout=60)
    assert made.exit_code == 0, made.stderr.decode(errors="replace")
    native = run_native(py, ["-c", READ_ZIP, str(archive)], timeout=60)
    assert native.exit_code == 0 and native.stdout.count(b"\n") == 8, native.stderr.decode()
    sandbox.write_file("/tmp/big.zip", archive.read_bytes())
    boxed = run_sandbox(py, ["-c", READ_ZIP, "/tmp/big.zip"], timeout=120, sandbox=sandbox)
    assert_same_outcome(native, boxed, what="python3 zipfile LZMA (64 MiB dictionary)")
