"""The host stub's machine code (pre-assembled) and its seccomp filter.

The code page lives at one address for the Sentry's whole life (host.stub_page():
layout.PTRACE_STUB_VIRT unless something held it before kvmbox was imported),
in the Sentry and in every stub.  It holds, at fixed offsets:

  GADGET_OFF  `syscall; jmp r15`: the only instruction the seccomp filter lets
              make a host syscall; the Sentry injects mmap/munmap/mprotect here
              with r15 = the trap, so the stub stops right after the syscall.
  TRAP_OFF    `int3`: a SIGTRAP stop that hands the stub back to the tracer.
  SPAWN_OFF   spawn(memfd, fprog, sentry_pid, rseq_offset, rseq_len, code_fd): raw
              fork(); the parent returns the pid (or -errno) to ctypes; the child
              never runs Python or libc: it unregisters the rseq area glibc
              registered for the calling thread (at fs:0 + __rseq_offset; the
              kernel would write to it, unmapped, on every return to user and
              SIGSEGV the stub), sets PR_SET_PDEATHSIG(SIGKILL), its own process
              group, replaces its copy of this page by a shared mapping of
              `code_fd` (the same bytes: the stub's own memfd, which the Sentry can
              empty to hide the page, see stub.py), closes every fd but the memfd,
              PTRACE_TRACEME, no_new_privs, installs the filter, unmaps everything
              but this page (from here on only through the gadget), makes the page
              execute-only (mprotect PROT_EXEC: with protection keys a read faults)
              and stops on the trap waiting for its tracer.
  PROBE_OFF   `mov al, [page]; jmp trap`: run once to learn whether execute-only
              really hides the page on this CPU (no protection keys: it does not).
  SPIN_OFF    `jmp .`: a new stub thread loops here, untraced for a moment, while
              the thread that made it hands it to its own tracer (stub.py).

The child stops with int3 rather than kill(getpid(), SIGSTOP), so `kill` need
not be on the filter's allow-list.  Any failure during set-up: exit_group(127).
tests/unit/test_ptrace_stub.py checks that keystone still gives STUB_CODE from
STUB_ASM; start-up never imports keystone.
"""
from __future__ import annotations

import struct

from kvmbox.abi import mman
from kvmbox.guest_stub import layout as L
from kvmbox.platform.ptrace import consts as C

GADGET_OFF = 0            # syscall; jmp r15
GADGET_RET_OFF = 2        # the RIP after the gadget's syscall (what seccomp sees)
TRAP_OFF = 5              # int3
SPAWN_OFF = 6             # spawn(memfd, &sock_fprog, sentry pid, rseq offset, rseq len, code fd)
PROBE_OFF = 402           # `mov al, [page]; jmp trap`: does reading the execute-only page fault?
SPIN_OFF = 413            # `jmp .`: where a new stub thread waits between two tracers

# Position-independent (every reference to the page is RIP-relative): the page goes wherever
# host.reserve_stub_page() found room (tests/unit/test_ptrace_stub.py checks STUB_CODE).
STUB_ASM = f"""
gadget:
    syscall
    jmp r15
trap:
    int3
spawn:
    push rbx
    push r12
    mov rbx, rsi
    mov r12, rdx
    mov rsi, r8
    mov r8, rdi
    mov rdi, rcx
    mov eax, {C.NR_fork}
    syscall
    test rax, rax
    jz child
    pop r12
    pop rbx
    ret
child:
    test esi, esi
    jz norseq
    add rdi, qword ptr fs:[rax]
    mov edx, {C.RSEQ_FLAG_UNREGISTER}
    mov r10d, {C.RSEQ_SIG:#x}
    mov eax, {C.NR_rseq}
    syscall
    test rax, rax
    jnz die
norseq:
    mov eax, {C.NR_prctl}
    mov edi, {C.PR_SET_PDEATHSIG}
    mov esi, {C.SIGKILL}
    syscall
    mov eax, {C.NR_getppid}
    syscall
    cmp rax, r12
    jne die
    mov eax, {C.NR_setpgid}
    xor edi, edi
    xor esi, esi
    syscall
    mov r12, r8
    lea rdi, [rip + gadget]
    mov esi, {L.PAGE_SIZE:#x}
    mov edx, {mman.PROT_READ | mman.PROT_EXEC}
    mov r10d, {mman.MAP_SHARED | mman.MAP_FIXED:#x}
    mov r8, r9
    xor r9d, r9d
    mov eax, {C.NR_mmap}
    syscall
    mov r8, r12
    cmp rax, rdi
    jne die
    test r8, r8
    jz above
    mov eax, {C.NR_close_range}
    xor edi, edi
    lea rsi, [r8 - 1]
    xor edx, edx
    syscall
above:
    mov eax, {C.NR_close_range}
    lea rdi, [r8 + 1]
    mov esi, 0xffffffff
    xor edx, edx
    syscall
    mov eax, {C.NR_ptrace}
    xor edi, edi
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    syscall
    test rax, rax
    jnz die
    mov eax, {C.NR_prctl}
    mov edi, {C.PR_SET_NO_NEW_PRIVS}
    mov esi, 1
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    syscall
    test rax, rax
    jnz die
    mov eax, {C.NR_seccomp}
    mov edi, {C.SECCOMP_SET_MODE_FILTER}
    xor esi, esi
    mov rdx, rbx
    syscall
    test rax, rax
    jnz die
    mov eax, {C.NR_munmap}
    xor edi, edi
    lea rsi, [rip + gadget]
    lea r15, [rip + high]
    jmp gadget
high:
    mov eax, {C.NR_munmap}
    lea rdi, [rip + gadget]
    add rdi, {L.PAGE_SIZE:#x}
    mov rsi, {C.TASK_SIZE:#x}
    sub rsi, rdi
    lea r15, [rip + xonly]
    jmp gadget
xonly:
    mov eax, {C.NR_mprotect}
    lea rdi, [rip + gadget]
    mov esi, {L.PAGE_SIZE:#x}
    mov edx, {mman.PROT_EXEC}
    lea r15, [rip + trap]
    jmp gadget
die:
    mov eax, {C.NR_exit_group}
    mov edi, 127
    syscall
    hlt
probe:
    mov al, byte ptr [rip + gadget]
    jmp trap
spin:
    jmp spin
"""
STUB_CODE = bytes.fromhex(
    "0f0541ffe7cc5341544889f34989d44c89c64989f84889cfb8390000000f054885c07404415c5bc385f6741f64480338"
    "ba0100000041ba53300553b84e0100000f054885c00f853a010000b89d000000bf01000000be090000000f05b86e0000"
    "000f054c39e00f8519010000b86d00000031ff31f60f054d89c4488d3d7fffffffbe00100000ba0500000041ba110000"
    "004d89c84531c9b8090000000f054d89e04839f80f85db0000004d85c0740fb8b401000031ff498d70ff31d20f05b8b4"
    "010000498d7801beffffffff31d20f05b86500000031ff31f631d24531d20f054885c00f859c000000b89d000000bf26"
    "000000be0100000031d24531d24531c00f054885c0757eb83d010000bf0100000031f64889da0f054885c07568b80b00"
    "000031ff488d35d5feffff4c8d3d05000000e9c9feffffb80b000000488d3dbdfeffff4881c70010000048be00f0ffff"
    "ff7f00004829fe4c8d3d05000000e99dfeffffb80a000000488d3d91feffffbe00100000ba040000004c8d3d85feffff"
    "e97bfeffffb8e7000000bf7f0000000f05f48a0568feffffe968feffffebfe")


def seccomp_filter(memfd: int, page: int) -> bytes:
    """The stub's BPF program (struct sock_filter[]): allow mmap/munmap/mprotect from the gadget only,
    and the two calls that make and end a stub thread: clone with exactly STUB_THREAD_FLAGS
    and exit (one thread; exit_group is not allowed).

    mmap must also be MAP_SHARED|MAP_FIXED of the MemoryFile's memfd; any other
    syscall from the gadget (or another ABI) is SECCOMP_RET_KILL_PROCESS.  A
    syscall from anywhere else is SECCOMP_RET_TRAP (not executed either; a
    SIGSYS the tracer sees): under PTRACE_SYSEMU only the kernel's vsyscall
    emulation gets that far (a guest calling 0xffffffffff600400 for time()),
    and the Sentry then kills the guest with SIGSEGV, as on KVM, instead of
    losing the whole stub.
    """
    ip = page + GADGET_RET_OFF
    # (code, k, jump-if-true label, jump-if-false label); None = fall through.
    prog: list[tuple[int, int, str | None, str | None]] = [
        (C.BPF_LD_W_ABS, C.SD_ARCH, None, None),
        (C.BPF_JEQ_K, C.AUDIT_ARCH_X86_64, None, "kill"),
        (C.BPF_LD_W_ABS, C.SD_IP, None, None),
        (C.BPF_JEQ_K, ip & 0xFFFF_FFFF, None, "trap"),
        (C.BPF_LD_W_ABS, C.SD_IP + 4, None, None),
        (C.BPF_JEQ_K, ip >> 32, None, "trap"),
        (C.BPF_LD_W_ABS, C.SD_NR, None, None),
        (C.BPF_JEQ_K, C.NR_munmap, "allow", None),
        (C.BPF_JEQ_K, C.NR_mprotect, "allow", None),
        (C.BPF_JEQ_K, C.NR_exit, "allow", None),
        (C.BPF_JEQ_K, C.NR_clone, "clone", None),
        (C.BPF_JEQ_K, C.NR_mmap, None, "kill"),
        (C.BPF_LD_W_ABS, C.SD_ARGS + 8 * 3, None, None),          # flags, low half
        (C.BPF_JEQ_K, mman.MAP_SHARED | mman.MAP_FIXED, None, "kill"),
        (C.BPF_LD_W_ABS, C.SD_ARGS + 8 * 3 + 4, None, None),      # flags, high half
        (C.BPF_JEQ_K, 0, None, "kill"),
        (C.BPF_LD_W_ABS, C.SD_ARGS + 8 * 4, None, None),          # fd (an int: low half)
        (C.BPF_JEQ_K, memfd, "allow", "kill"),
    ]
    clone_at = len(prog)
    prog += [
        (C.BPF_LD_W_ABS, C.SD_ARGS, None, None),                  # flags, low half
        (C.BPF_JEQ_K, C.STUB_THREAD_FLAGS, None, "kill"),
        (C.BPF_LD_W_ABS, C.SD_ARGS + 4, None, None),              # flags, high half
        (C.BPF_JEQ_K, 0, "allow", "kill"),
    ]
    labels = {"allow": len(prog), "kill": len(prog) + 1, "trap": len(prog) + 2, "clone": clone_at}
    out = bytearray()
    for i, (code, k, jt, jf) in enumerate(prog):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        out += struct.pack("<HBBI", code, t, f, k)
    out += struct.pack("<HBBI", C.BPF_RET_K, 0, 0, C.SECCOMP_RET_ALLOW)
    out += struct.pack("<HBBI", C.BPF_RET_K, 0, 0, C.SECCOMP_RET_KILL_PROCESS)
    out += struct.pack("<HBBI", C.BPF_RET_K, 0, 0, C.SECCOMP_RET_TRAP)
    return bytes(out)
