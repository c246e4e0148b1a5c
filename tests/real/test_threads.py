"""Threaded programs (issue 9, section 4): byte-identical to native on kvm and on ptrace.

Python's threading, concurrent.futures.ThreadPoolExecutor, queue,
multiprocessing.Pool with the fork start method (processes, threads, pipes and
a sem_open semaphore in /dev/shm) and asyncio.to_thread; xz -T2 and
sort --parallel=2 on inputs big enough to use their threads; node with
worker_threads and a single-file `java Hello.java` with a thread pool, where
they are installed.
Each case runs natively and in the sandbox with the same argv and environment;
exit status and stdout must match.  (The C pthreads programs are in
tests/programs: pthreads.c, futexes.c, threadstress.c, spinbar.c.)
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field

import pytest

from helpers import TEST_ENV, Outcome, assert_same_outcome, run_native, run_sandbox

RUN_TIMEOUT = 300

PY_THREADING = r"""
import threading
lock = threading.Lock()
cond = threading.Condition()
ready = threading.Event()
barrier = threading.Barrier(4)
counts = {}
order = []
def work(i):
    ready.wait()
    total = 0
    for k in range(20000):
        total += k % (i + 2)
    with lock:
        counts[i] = total
    n = barrier.wait()
    with cond:
        order.append(i)
        cond.notify_all()
threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}") for i in range(4)]
for t in threads:
    t.start()
ready.set()
with cond:
    cond.wait_for(lambda: len(order) == 4)
for t in threads:
    t.join()
print(sorted(counts.items()))
print(sorted(order), threading.active_count())
local = threading.local()
def setlocal(v, out):
    local.v = v
    out.append(local.v)
out = []
ts = [threading.Thread(target=setlocal, args=(v, out)) for v in "abc"]
[t.start() for t in ts]; [t.join() for t in ts]
print(sorted(out), hasattr(local, "v"))
timer = threading.Timer(0.05, lambda: print("timer fired", flush=True))
timer.start(); timer.join()
"""

PY_POOL = r"""
import concurrent.futures as cf, hashlib, queue, threading
def digest(i):
    return hashlib.sha256(str(i).encode() * 1000).hexdigest()[:12]
with cf.ThreadPoolExecutor(max_workers=4) as ex:
    print(list(ex.map(digest, range(12))))
    futs = [ex.submit(pow, 3, k) for k in range(5)]
    print([f.result() for f in cf.as_completed(futs)] and sorted(f.result() for f in futs))
q = queue.Queue(maxsize=8)
def producer():
    for i in range(500):
        q.put(i)
    q.put(None)
threading.Thread(target=producer).start()
total = 0
while (item := q.get()) is not None:
    total += item
print("queue total", total)
"""

PY_MULTIPROCESSING = r"""
import multiprocessing as mp
def square(x):
    return x * x
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Pool(2) as pool:
        print(pool.map(square, range(30)))
        print(sorted(pool.imap_unordered(square, range(10))))
        print(pool.apply_async(square, (12,)).get(timeout=60))
    lock = mp.Lock()
    value = mp.Value("i", 0)
    def bump():
        for _ in range(100):
            with lock:
                value.value += 1
    ps = [mp.Process(target=bump) for _ in range(3)]
    [p.start() for p in ps]; [p.join() for p in ps]
    print("shared value", value.value, [p.exitcode for p in ps])
"""

PY_ASYNCIO = r"""
import asyncio, threading
def blocking(n):
    return sum(range(n)), threading.current_thread() is not threading.main_thread()
async def main():
    print(await asyncio.gather(*(asyncio.to_thread(blocking, k * 1000) for k in range(5))))
    await asyncio.sleep(0.01)
    print("done")
asyncio.run(main())
"""

JAVA = r"""
import java.util.concurrent.*;
public class Hello {
  public static void main(String[] a) throws Exception {
    ExecutorService ex = Executors.newFixedThreadPool(3);
    java.util.List<Future<Long>> fs = new java.util.ArrayList<>();
    for (int i = 0; i < 6; i++) {
      final int k = i;
      fs.add(ex.submit(() -> { long s = 0; for (int j = 0; j < 1000000 * (k + 1); j++) s += j % 7; return s; }));
    }
    long total = 0;
    for (Future<Long> f : fs) total += f.get();
    ex.shutdown();
    System.out.println("Hello from java threads: " + total);
  }
}
"""

# Inputs made in the script, deterministically: 6 MB of numbers for xz (1 MiB blocks, so
# -T2 compresses two blocks at once) and 400,000 lines for sort (its threads sort halves).
XZ = r"""
d=$(mktemp -d)
seq 1 900000 > "$d/in"
xz -T2 -1 --block-size=1MiB -c "$d/in" > "$d/in.xz"
xz -T2 -dc "$d/in.xz" | md5sum
md5sum < "$d/in.xz"
xz --robot -lv "$d/in.xz" | awk '$1 == "totals" {print "blocks", $3}'
rm -r "$d"
"""

SORT = r"""
d=$(mktemp -d)
awk 'BEGIN { srand(7); for (i = 0; i < 400000; i++) print int(rand() * 1000000000), i }' > "$d/in"
sort --parallel=2 -S 64M -n "$d/in" | md5sum
sort --parallel=2 -S 1M -T "$d" -k2,2n "$d/in" | tail -n 2
rm -r "$d"
"""

NODE = r"""
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
if (isMainThread) {
  const results = [];
  let done = 0;
  for (let i = 0; i < 3; i++) {
    const w = new Worker(process.argv[1], { workerData: i });
    w.on('message', (m) => { results[i] = m; if (++done === 3) console.log(JSON.stringify(results)); });
  }
} else {
  let s = 0;
  for (let j = 0; j < 200000 * (workerData + 1); j++) s += j % 7;
  parentPort.postMessage(s);
}
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=lambda: dict(TEST_ENV))
    needs: str = ""                 # a host program the case needs


CASES = [
    Case("python-threading", ("/usr/bin/python3", "-c", PY_THREADING)),
    Case("python-thread-pool-and-queue", ("/usr/bin/python3", "-c", PY_POOL)),
    Case("python-multiprocessing-fork", ("/usr/bin/python3", "-c", PY_MULTIPROCESSING)),
    Case("python-asyncio-to-thread", ("/usr/bin/python3", "-c", PY_ASYNCIO)),
    Case("xz-T2", ("/bin/sh", "-c", XZ), needs="xz"),
    Case("sort-parallel", ("/bin/sh", "-c", SORT)),
    Case("node-worker-threads", ("/bin/sh", "-c", 'f=$(mktemp); cat > "$f"; node "$f"; rm "$f"'),
         needs="node"),
    Case("java-thread-pool", ("/bin/sh", "-c", 'd=$(mktemp -d); cat > "$d/Hello.java"; '
                              'java "$d/Hello.java"; s=$?; rm -r "$d"; exit $s'), needs="java"),
]
IDS = [c.name for c in CASES]
STDIN = {"node-worker-threads": NODE.encode(), "java-thread-pool": JAVA.encode()}


def _needs(case: Case) -> None:
    if case.needs and not shutil.which(case.needs, path=TEST_ENV["PATH"]):
        pytest.skip(f"{case.needs} is not installed on this host")


def _native(case: Case) -> Outcome:
    return run_native(case.argv[0], case.argv[1:], stdin=STDIN.get(case.name, b""), env=case.env,
                      timeout=120, cwd="/")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_native(case):
    _needs(case)
    native = _native(case)
    assert native.exit_code == 0 and native.signal == 0 and native.stdout, (
        f"{case.name} natively: {native.describe()}\n{native.stderr.decode(errors='replace')}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_same_as_native(case, sandbox):
    _needs(case)
    native = _native(case)
    assert native.exit_code == 0, native.describe()
    boxed = run_sandbox(case.argv[0], case.argv[1:], stdin=STDIN.get(case.name, b""), env=case.env,
                        timeout=RUN_TIMEOUT, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what=case.name)
