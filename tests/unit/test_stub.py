"""The guest stub: both flavours assemble, fit their slots, and keep the exit protocol."""
from __future__ import annotations

from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from kvmbox.guest_stub import layout as L
from kvmbox.guest_stub import stub


def _insns(code: bytes, base: int = 0):
    return [(i.mnemonic, i.op_str) for i in Cs(CS_ARCH_X86, CS_MODE_64).disasm(code, base)]


def test_exception_entries_push_a_uniform_frame():
    code = stub.build("pvm-native")
    for vec, entry in enumerate(code.handlers):
        assert len(entry) <= L.HANDLER_STRIDE
        ops = _insns(entry)
        pushes = [op for m, op in ops if m == "push"]
        assert pushes == ([hex(vec) if vec > 9 else str(vec)] if vec in L.VECTORS_WITH_ERROR
                          else ["0", hex(vec) if vec > 9 else str(vec)])
        assert ("out", f"{L.PORT_EXCEPTION:#x}, al") in ops and ops[-1][0] == "iretq"


def test_pvm_trampoline_has_one_exit_and_reads_only_its_data_page():
    code = stub.build("pvm-native")
    base = L.STUB_VIRT + L.user_trampoline(0)
    insns = list(Cs(CS_ARCH_X86, CS_MODE_64).disasm(code.trampoline, base))
    outs = [i for i in insns if i.mnemonic == "out"]
    assert len(outs) == 1 and outs[0].address + outs[0].size - base == code.syscall_exit_offset
    data = base + L.PAGE_SIZE
    end = data + L.FAST_SIGTABLE + 64 * L.SIGACTION_SIZE
    for i in insns:
        if "rip +" in i.op_str:
            disp = int(i.op_str.split("rip + ")[1].split("]")[0], 16)
            assert data <= i.address + i.size + disp < end
    # The only stores: the rt_sigaction query's four movsq to the user's oldact.
    lo, hi = code.sigaction_copy
    stores = [i for i in insns if i.mnemonic.startswith("movs")
              or (i.op_str.split(",")[0].endswith("]") and i.mnemonic not in ("cmp", "test"))]
    assert [(i.mnemonic, i.address - base) for i in stores] == [("movsq", off) for off in range(lo, hi, 2)]
    assert not any(i.mnemonic in ("push", "pop", "pushfq", "popfq") for i in insns), \
        "the user trampoline must not touch the user stack (red zone)"


def test_hw_entry_switches_stack_and_returns_both_ways():
    ops = [m for m, _ in _insns(stub.build("hw").trampoline)]
    assert ops[0] == "swapgs" and "sysretq" in ops and ops[-1] == "iretq"
    assert ops.count("out") == 1


def test_build_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = stub._assemble("pvm-native")
    stub.build.cache_clear()
    try:
        built = stub.build("pvm-native")
        assert list((tmp_path / "kvmbox").glob("stub-pvm-native-*.json"))
        assert built.trampoline.hex() == first["trampoline"]
    finally:
        stub.build.cache_clear()
