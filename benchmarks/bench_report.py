"""The comparison report: one data structure filled during the session, rendered at its end.

Every workload is a row with three cells (native, kvm, ptrace).  A cell holds
a median in nanoseconds per unit of work, or the reason it has no number
("n/a (platform unavailable: ...)").  Ratios are always to the native cell of
the same row, measured in the same run.  render_markdown() writes the table
for benchmarks/results/report.md and README.md; render_svg() draws the ratios
as log-scale bars with nothing but the standard library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

COLUMNS = ("native", "kvm", "ptrace")
PLATFORMS = ("kvm", "ptrace")
COLOURS = {"kvm": "#3465a4", "ptrace": "#f57900"}

# The table's rows, in order: key, label, unit of one iteration, note.
ROWS: list[tuple[str, str, str, str]] = [
    ("getpid", "syscall round trip: getpid (KVM: in-guest fast path)", "call",
     "KVM answers getpid in the guest, no exit"),
    ("getpid_sentry", "syscall round trip: getpid, every call to the Sentry (`fast_path=False`)", "call", ""),
    ("trap_floor", "bare trap floor: stub `syscall` answered with no Sentry work", "call", ""),
    ("clock", "clock_gettime(CLOCK_MONOTONIC)", "call",
     "all three read the clock in a vDSO (kvmbox: TSC-calibrated page), no syscall"),
    ("sha256", "compute: sha256 over 64 MiB", "64 MiB", "no syscalls in the loop"),
    ("pagefault", "page faults: mmap, touch, munmap 256 MiB", "256 MiB round", "65536 pages per round"),
    ("mmap_churn", "mmap/mprotect/munmap churn, 4-page mappings", "iteration",
     "mmap + 2 mprotect + munmap + touches"),
    ("writes", "16-byte write(2)s to captured stdout", "write", "native: to a pipe"),
    ("cold_start", "cold start: `kvmbox run` static hello (new process)", "run",
     "native: fork+exec of hello from Python"),
    ("cold_true", "cold start: `kvmbox run /bin/true` (new process) vs a bare `python -c pass`", "run",
     "native: a bare `python -c pass` of the same interpreter; interleaved; target ≤ 4× on KVM"),
    ("warm_start", "warm start: static hello in one Sandbox (50 runs)", "run",
     "native: fork+exec of hello from Python"),
    ("start_true", "start-up: dynamic `/bin/true` (ld.so + libc) in one Sandbox", "run",
     "native: fork+exec from Python"),
    ("start_python", "start-up: `python3 -c pass` in one Sandbox", "run",
     "native: fork+exec from Python; target under 5x on KVM"),
    ("read64m", "read a 64 MiB host file in 64 KiB read(2)s", "64 MiB pass",
     "through the overlay's host layer"),
    ("ls_lr", "`ls -lR /usr/lib` (stat-heavy, ~70k entries)", "run", "output captured"),
    ("fork_wait", "process round trip: fork, child `_exit`, `waitpid` (static parent)", "fork", ""),
    ("sh_true_loop", "`sh -c 'for i in $(seq 200); do /bin/true; done'`", "run",
     "200 fork+exec+wait of dynamic /bin/true; target ≤ 12× native on KVM"),
    ("fork_256m", "fork of a parent with 256 MiB resident, child exits at once", "fork",
     "copy-on-write: no page is copied"),
    ("par_1", "compute on 1 thread: 1.6e9 LCG steps", "run", "start-up included"),
    ("par_2", "the same work on 2 threads", "run", "speedup = par_1 / par_2; target ≥ 1.7× on kvm and ptrace"),
    ("futex_pingpong", "futex ping-pong between two threads", "round trip", "2 waits + 2 wakes"),
    ("thread_create", "pthread_create + pthread_join", "thread", ""),
    ("socketpair_64k", "AF_UNIX socketpair to a forked child, 64 KiB writes", "64 KiB write",
     "MB/s = 65536 / ns × 1000"),
    ("socketpair_rr", "AF_UNIX socketpair request/response, 64 bytes each way", "round trip", ""),
    ("tcp_64k", "TCP over 127.0.0.1 to a forked child, 64 KiB writes", "64 KiB write",
     "MB/s = 65536 / ns × 1000; kvm and ptrace: the Sentry's own loopback"),
    ("tcp_rr", "TCP over 127.0.0.1 request/response, 64 bytes each way (TCP_NODELAY)", "round trip", ""),
    ("thread_stress", "threadstress: 16 threads × 400 rounds of files, mmaps, pipes, ping-pong", "run",
     "tests/programs/threadstress.c"),
]
_ROW_INDEX = {key: i for i, (key, *_rest) in enumerate(ROWS)}
_ROW_LABEL = {key: label for key, label, *_rest in ROWS}
_ROW_UNIT = {key: unit for key, _l, unit, _n in ROWS}
_ROW_NOTE = {key: note for key, _l, _u, note in ROWS}


@dataclass
class Cell:
    ns: float | None = None        # median per unit of work
    na: str | None = None          # why there is no number


@dataclass
class Row:
    key: str
    cells: dict[str, Cell] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def ratio(self, column: str) -> float | None:
        c, n = self.cells.get(column), self.cells.get("native")
        if c is None or n is None or c.ns is None or n.ns is None or n.ns <= 0 or c.ns <= 0:
            return None
        return c.ns / n.ns


class Results:
    """All figures of one session.  Tests call record() / unavailable(); the session end renders."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.core: list[tuple[str, str, str]] = []    # the KVM core figures (kvm_core.md)
        self.peers: dict[str, dict[str, Cell]] = {}   # workload -> tool -> cell (benchmarks/peers.py)
        self.transitions: dict = {}                   # exit_designs.run_all()'s result (test_transitions.py)

    def _row(self, key: str) -> Row:
        if key not in _ROW_INDEX:
            raise KeyError(f"unknown report row {key!r}")
        return self.rows.setdefault(key, Row(key))

    def record(self, key: str, column: str, ns: float) -> None:
        self._row(key).cells[column] = Cell(ns=float(ns))

    def unavailable(self, key: str, column: str, reason: str) -> None:
        self._row(key).cells[column] = Cell(na=reason)

    def peer(self, workload: str, tool: str, ns: float | None, why: str = "") -> None:
        """A cold run of `workload` under `tool` ("native", "kvm", "ptrace", or a peer)."""
        self.peers.setdefault(workload, {})[tool] = Cell(ns=ns) if ns is not None else Cell(na=why)

    def note(self, key: str, text: str) -> None:
        self._row(key).notes.append(text)

    def ordered(self) -> list[Row]:
        return sorted(self.rows.values(), key=lambda r: _ROW_INDEX[r.key])

    def derived_notes(self, row: Row) -> list[str]:
        """Notes computed from other rows: the Sentry's overhead over each platform's trap floor."""
        if row.key != "trap_floor" or "getpid_sentry" not in self.rows:
            return []
        out = []
        sentry = self.rows["getpid_sentry"]
        for p in PLATFORMS:
            f, s = row.cells.get(p), sentry.cells.get(p)
            if f and s and f.ns and s.ns:
                out.append(f"Sentry overhead on {p}: {round((s.ns / f.ns - 1) * 100) + 0:+d}%")
            else:
                out.append(f"Sentry overhead on {p}: n/a")
        return [", ".join(out) + " (target ≤ +30%)"]


def fmt_time(ns: float) -> str:
    if ns < 1_000:
        return f"{ns:.0f} ns" if ns >= 10 else f"{ns:.1f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def _cell_text(row: Row, column: str) -> tuple[str, str]:
    c = row.cells.get(column)
    if c is None:
        return "—", "—"
    if c.na is not None:
        return f"n/a ({c.na})", "—"
    r = row.ratio(column) if column != "native" else None
    return fmt_time(c.ns), (fmt_ratio(r) if r is not None else "—")


def render_markdown(results: Results) -> str:
    lines = ["| workload | per | native median | kvm median | kvm / native | ptrace median | ptrace / native | note |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results.ordered():
        nat, _ = _cell_text(row, "native")
        kvm, kvm_r = _cell_text(row, "kvm")
        pt, pt_r = _cell_text(row, "ptrace")
        notes = [n for n in [_ROW_NOTE[row.key], *row.notes, *results.derived_notes(row)] if n]
        lines.append(f"| {_ROW_LABEL[row.key]} | {_ROW_UNIT[row.key]} | {nat} | {kvm} | {kvm_r} | {pt} | {pt_r} "
                     f"| {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def render_peers(results: Results, tools: list[str]) -> str:
    """The peers table: native median, then each tool as a ratio to it (same run)."""
    lines = ["| workload (cold, from the command line) | native | " + " | ".join(tools) + " |",
             "|---|---|" + "---|" * len(tools)]
    for workload, cells in results.peers.items():
        nat = cells.get("native")
        row = [workload, fmt_time(nat.ns) if nat and nat.ns else "—"]
        for t in tools:
            c = cells.get(t)
            if c is None:
                row.append("—")
            elif c.ns is None:
                row.append(f"n/a: {c.na}")
            else:
                row.append(fmt_ratio(c.ns / nat.ns) if nat and nat.ns else fmt_time(c.ns))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render_core(results: Results) -> str:
    lines = ["| measurement | value | note |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {note} |" for n, v, note in results.core]
    return "\n".join(lines) + "\n"


def render_svg(results: Results) -> str:
    """Horizontal log-scale bars of platform / native, grouped per workload, labelled."""
    rows = [r for r in results.ordered() if "native" in r.cells and r.cells["native"].ns]
    ratios = [r.ratio(p) for r in rows for p in PLATFORMS]
    known = [x for x in ratios if x]
    lo_dec = math.floor(math.log10(min(known + [1.0]))) if known else 0
    hi_dec = math.ceil(math.log10(max(known + [10.0]))) if known else 1
    if hi_dec <= lo_dec:
        hi_dec = lo_dec + 1
    label_w, plot_w, right = 430, 520, 80
    bar_h, gap, top = 16, 14, 50
    group_h = len(PLATFORMS) * bar_h + gap
    height = top + len(rows) * group_h + 50
    width = label_w + plot_w + right

    def x(v: float) -> float:
        return label_w + (math.log10(v) - lo_dec) / (hi_dec - lo_dec) * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
           'kvmbox: time per unit of work relative to native (log scale, same run)</text>']
    # decade grid
    y0, y1 = top - 8, top + len(rows) * group_h - gap + 8
    for d in range(lo_dec, hi_dec + 1):
        for m in (1, 2, 5) if d < hi_dec else (1,):
            v = m * 10.0 ** d
            xv = x(v)
            strong = m == 1
            out.append(f'<line x1="{xv:.1f}" y1="{y0}" x2="{xv:.1f}" y2="{y1}" '
                       f'stroke="{"#999" if strong else "#ddd"}" stroke-width="1"/>')
            if strong:
                out.append(f'<text x="{xv:.1f}" y="{y1 + 16}" text-anchor="middle">{fmt_ratio(v)}</text>')
    if lo_dec <= 0 <= hi_dec:
        out.append(f'<line x1="{x(1):.1f}" y1="{y0}" x2="{x(1):.1f}" y2="{y1}" stroke="black" '
                   'stroke-width="1.5" stroke-dasharray="4,3"/>')
        out.append(f'<text x="{x(1) + 4:.1f}" y="{y0 - 2}" font-size="11">native = 1×</text>')
    base = label_w
    for i, row in enumerate(rows):
        gy = top + i * group_h
        label = _ROW_LABEL[row.key].replace("`", "")
        out.append(f'<text x="{label_w - 8}" y="{gy + bar_h + 4}" text-anchor="end">{escape(label)}</text>')
        for j, p in enumerate(PLATFORMS):
            by = gy + j * bar_h
            r = row.ratio(p)
            if r is None:
                c = row.cells.get(p)
                why = "n/a" if c is None or c.na is None else "n/a: " + c.na
                out.append(f'<text x="{base + 4}" y="{by + bar_h - 4}" font-size="11" fill="#888">'
                           f'{escape(p)} {escape(why[:80])}</text>')
                continue
            xe = x(r)
            out.append(f'<rect x="{base}" y="{by + 1}" width="{max(xe - base, 1):.1f}" height="{bar_h - 2}" '
                       f'fill="{COLOURS[p]}"><title>{escape(p)}: {fmt_ratio(r)}</title></rect>')
            out.append(f'<text x="{max(xe, base) + 4:.1f}" y="{by + bar_h - 4}" font-size="11">'
                       f'{escape(p)} {fmt_ratio(r)}</text>')
    ly = height - 14
    for j, p in enumerate(PLATFORMS):
        lx = label_w + j * 110
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{COLOURS[p]}"/>')
        out.append(f'<text x="{lx + 16}" y="{ly}">{p}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- per-transition table (issue 11; Results.transitions, filled by test_transitions.py) ---

# (probe row, label) in report order; rows the probe could not run show why.
_TRANSITION_ROWS = [
    ("syscall_out", "exit: syscall to the Sentry, bare (`syscall` → user trampoline `out` via TSS bitmap, sync REGS|SREGS, REGS dirty)"),
    ("in_guest_syscall", "in-guest syscall (answered by the trampoline, no exit)"),
    ("first_touch_4k", "first touch of a present 4 KiB page (PVM shadow fault, guest tables already shadowed)"),
    ("ptrace_sysemu", "ptrace round trip (PTRACE_SYSEMU getpid, same CPU)"),
    ("immediate_exit", "KVM_RUN with immediate_exit (no guest entry)"),
    ("out_tss", "alternative: ring-3 `out` alone (TSS I/O bitmap)"),
    ("syscall_out_nodirty", "alternative: as the exit, nothing marked dirty"),
    ("syscall_out_regs", "alternative: as the exit, sync REGS only"),
    ("syscall_out_nosync", "alternative: as the exit, no sync regs at all"),
    ("syscall_out_get_regs", "alternative: no sync regs, KVM_GET_REGS per exit"),
    ("syscall_out_getset_regs", "alternative: no sync regs, KVM_GET_REGS + KVM_SET_REGS"),
    ("syscall_mmio", "alternative: `syscall` → trampoline MMIO store (KVM_EXIT_MMIO)"),
    ("mmio_write", "alternative: ring-3 MMIO store alone"),
    ("int3_ring0_out", "alternative: `int3` → ring-0 handler `out; iretq`"),
    ("out_notss", "alternative: ring-3 `out` with no TSS"),
    ("out_iopl3", "alternative: ring-3 `out` with IOPL 3"),
    ("int3_debug", "alternative: int3 with KVM_SET_GUEST_DEBUG (KVM_EXIT_DEBUG)"),
    ("hlt_ring0", "ring-0 `hlt` (KVM_EXIT_HLT), for scale"),
    ("out_ring0", "ring-0 `out`, for scale"),
    ("vmmcall_in_guest", "ring-3 `vmmcall` (answered in the host kernel, no exit)"),
]


def _params(params) -> str:
    """Module parameters as `name=value ...` (the probe records them as a dict)."""
    return " ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else str(params or "")


def render_transitions(res: dict) -> str:
    """The per-transition table in µs, with the machine that produced it."""
    if not res:
        return ""
    m = res["machine"]
    rows = {r["name"]: r for r in res["rows"]}
    base = rows.get("syscall_out", {}).get("median_us")
    lines = [f"Measured by benchmarks/probes/exit_designs.py (raw ioctls, no Sentry): CPU {m['cpu']}, "
             f"{m['ncpu']} CPUs, {m['hypervisor']} {_params(m.get('pvm_params'))}, kernel {m['kernel']}. "
             f"Median of {res['iters']} per-iteration times per row, designs interleaved in "
             f"{res['rounds']} rounds.\n",
             "| transition | median µs | p10–p90 µs | vs the exit |", "|---|---|---|---|"]
    for key, label in _TRANSITION_ROWS:
        r = rows.get(key)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {label} | fails | {r['error']} | |")
            continue
        rel = f"{r['median_us'] / base:.2f}×" if base else ""
        lines.append(f"| {label} | {r['median_us']:.2f} | {r['p10_us']:.2f}–{r['p90_us']:.2f} | {rel} |")
    return "\n".join(lines) + "\n"
