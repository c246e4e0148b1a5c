"""Programs that fork (issue 8, section 6): byte-identical to native on kvm and on ptrace.

Shell pipelines, command substitution, background jobs, redirections and
here-documents (dash and bash); xargs, find -exec, tar piped into tar; make
and make -j2 in a host directory mounted read-write; gcc running cc1, as,
collect2 and ld; git init/add/commit/log with fixed names and dates; Python's
subprocess, os.fork and os.posix_spawn.  Each case runs natively and in the
sandbox with the same argv, environment and working directory; exit status and
stdout must match.  Scratch files live in a `mktemp -d` directory that the
script removes (the host's /tmp natively, the sandbox's overlay in the box), and
no output names it.

`test_*_native` checks that each case works natively too.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import TEST_ENV, Outcome, assert_same_outcome, run_native, run_sandbox

RUN_TIMEOUT = 300

SH_PIPES = r"""
printf 'pear\napple\nfig\napple\n' | sort | uniq -c | sort -rn | head -n 2
seq 1 20000 | tail -n 1
yes | head -n 3
true | false
echo "status $?"
cat /etc/passwd | wc -l > /dev/null && echo "and-list"
"""

SH_SUBST = r"""
n=$(printf 'a\nb\nc\n' | wc -l)
echo "lines $n"
echo "nested $(echo $(echo inner) | tr a-z A-Z)"
x=`echo backtick`
echo "$x"
echo "status $(false; echo $?)"
echo "$(seq 3 | while read i; do printf '%s.' "$i"; done)"
"""

SH_JOBS = r"""
(echo "background job output") & wait $!
echo "waited $?"
(exit 7) & wait $!
echo "bg status $?"
for i in 1 2 3; do (echo "job $i" > /dev/null) & done
wait
echo "all done"
sleep 30 & k=$!
kill $k
wait $k
echo "killed status $?"
sleep 2 | sleep 31 &          # kill takes the last of the pipeline; wait outlives the first (2 s, not 30)
kill %1 2>/dev/null || kill $!
wait
echo "end"
"""

SH_REDIRECT = r"""
d=$(mktemp -d)
echo one > "$d/f"
echo two >> "$d/f"
cat < "$d/f"
wc -l < "$d/f"
ls /nonexistent-dir 2>&1 >/dev/null | sed 's/:.*//'
{ echo out; echo err >&2; } 2>&1 | sort
exec 3> "$d/g"
echo via3 >&3
exec 3>&-
cat "$d/g"
cat "$d/f" "$d/g" /nonexistent > "$d/h" 2>/dev/null
echo "cat status $?"
wc -c < "$d/h"
rm -r "$d"
"""

SH_HEREDOC = r"""
x=world
cat <<EOF
hello $x $(echo sub) \$literal
EOF
cat <<'EOF'
no $x expansion
EOF
cat <<-EOF
	tab stripped $x
	EOF
tr a-z A-Z <<EOF | sed 's/^/> /'
pipe from a here-document
EOF
while read -r a b; do echo "$b $a"; done <<EOF
1 one
2 two
EOF
"""

BASH_SCRIPT = r"""#!/bin/bash
set -u
trap 'echo "exit trap"' EXIT
square() { local n=$1; echo $(( n * n )); }
fib() { local n=$1; if (( n < 2 )); then echo "$n"; else echo $(( $(fib $((n - 1))) + $(fib $((n - 2))) )); fi; }
fruits=(pear apple "passion fruit" fig)
fruits+=(kiwi)
echo "count ${#fruits[@]}, second ${fruits[1]}, slice ${fruits[*]:1:2}"
printf '%s\n' "${fruits[@]}" | sort | head -n 3
declare -A colour=([apple]=red [kiwi]=green [fig]=purple)
for k in $(printf '%s\n' "${!colour[@]}" | sort); do echo "$k=${colour[$k]}"; done
mapfile -t nums < <(seq 5 -1 1)
echo "mapfile ${nums[*]}"
echo "square $(square 12), fib $(fib 8)"
total=0
while read -r n; do total=$(( total + n )); done < <(seq 100)
echo "total $total"
true | false | true
echo "PIPESTATUS ${PIPESTATUS[*]}"
set -o pipefail; false | true; echo "pipefail $?"; set +o pipefail
square 9 | { read -r v; echo "read from a pipe $v"; }
lens=$(for f in "${fruits[@]}"; do printf '%s ' "${#f}"; done)
echo "lengths $lens"
( cd /etc && pwd ); pwd
echo "$(( $(seq 10 | paste -sd+) ))"
"""

XARGS = r"""
printf '%s\n' a b c d e | xargs -n 2 echo
seq 1 12 | xargs -P 2 -n 3 sh -c 'echo $(( $1 + $2 + $3 ))' sh | sort -n
printf 'x\0y z\0' | xargs -0 -I{} echo "<{}>"
echo | xargs -r echo never
echo "status $?"
printf '1\n2\n' | xargs sh -c 'exit 3'
echo "xargs status $?"
"""

FIND_EXEC = r"""
d=$(mktemp -d)
mkdir -p "$d/a/b" "$d/c"
echo 1 > "$d/a/one.txt"; echo 22 > "$d/a/b/two.txt"; echo 333 > "$d/c/three.log"
cd "$d"
find . -type f -name '*.txt' -exec wc -c {} \; | sort
find . -type f -exec cat {} + | sort
find . -name '*.log' -execdir basename {} \;
find . -type f -exec sh -c 'test -s "$1"' sh {} \; -print | sort
find . | sort
cd /
rm -rf "$d"
"""

TAR_PIPE = r"""
tar cf - -C /etc passwd group hostname | tar tvf -
tar czf - -C /etc passwd | tar tzf -
d=$(mktemp -d)
tar cf - -C /etc passwd group | tar xf - -C "$d"
cmp /etc/passwd "$d/passwd" && cmp /etc/group "$d/group" && echo "round trip ok"
rm -rf "$d"
"""

GCC = r"""
d=$(mktemp -d)
cd "$d"
cat > t.c <<'EOF'
#include <stdio.h>
#include <string.h>
static unsigned long h(const char *s) { unsigned long x = 5381; while (*s) x = x * 33 + (unsigned char)*s++; return x; }
int main(int argc, char **argv) {
    printf("built and ran: argc %d, hash %lx, strlen %zu\n", argc, h("kvmbox"), strlen(argv[0]));
    return 3;
}
EOF
gcc -O1 -o t t.c && ./t one two
echo "t status $?"
gcc -c -o u.o -x c - <<'EOF' && echo "compiled stdin"
int u(void) { return 42; }
EOF
gcc -o bad -x c - <<'EOF' 2>/dev/null
int main(void) { return undefined_symbol(); }
EOF
echo "failed link status $?"
cd /
rm -rf "$d"
"""

GIT = r"""
set -e
d=$(mktemp -d)
cd "$d"
git init -q -b main
printf 'hello\n' > a.txt
mkdir sub
printf 'x\ny\n' > sub/b.txt
git add .
git commit -q -m "first commit"
printf 'more\n' >> a.txt
git commit -q -am "second commit"
git log --format='%H %an <%ae> %ad | %cn %cd | %s' --date=raw
git log --stat --format='-- %s'
git status --short
echo dirty >> sub/b.txt
git status --short
git diff --stat
git rev-parse HEAD^{tree}
git cat-file -p HEAD
cd /
rm -rf "$d"
"""

GIT_ENV = {**TEST_ENV, "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
           "GIT_AUTHOR_NAME": "A U Thor", "GIT_AUTHOR_EMAIL": "author@example.com",
           "GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_NAME": "C O Mitter",
           "GIT_COMMITTER_EMAIL": "committer@example.com", "GIT_COMMITTER_DATE": "1700000100 +0100",
           "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"}

PYTHON = r"""
import os, subprocess, sys
PIPE = subprocess.PIPE
print(subprocess.run(["echo", "run"], capture_output=True).stdout, flush=True)
r = subprocess.run("echo $((6*7)) | tr 4 X; exit 3", shell=True, capture_output=True, text=True)
print(repr(r.stdout), r.returncode, flush=True)
p = subprocess.Popen(["sort"], stdin=PIPE, stdout=PIPE)
print(p.communicate(b"pear\napple\nfig\n"), p.returncode, flush=True)
p1 = subprocess.Popen(["seq", "1000"], stdout=PIPE)
p2 = subprocess.Popen(["wc", "-l"], stdin=p1.stdout, stdout=PIPE)
p1.stdout.close()
print(p2.communicate()[0], p1.wait(), p2.returncode, flush=True)
print(subprocess.run(["false"]).returncode, subprocess.run(["sh", "-c", "kill -TERM $$"]).returncode, flush=True)
try:
    subprocess.run(["/nonexistent/program"])
except FileNotFoundError as e:
    print("FileNotFoundError", e.errno, flush=True)
with subprocess.Popen(["cat"], stdin=PIPE, stdout=PIPE, text=True) as p:
    print(len(p.communicate("x" * 200000)[0]), flush=True)
print(subprocess.check_output(["sh", "-c", "echo $0 $1", "zero", "one"]), flush=True)
subprocess.run(["echo", "a child writing to our stdout"])
subprocess.run("echo shell=True without capture", shell=True)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork + waitpid:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"from the child, ppid ok %d" % (os.getppid() > 0))
    os._exit(0)
os.close(w)
print(os.read(r, 100), flush=True)
print("reaped:", os.waitpid(pid, 0)[0] == pid, flush=True)
pid = os.posix_spawn("/bin/echo", ["echo", "posix_spawn child"], {"PATH": "/bin"})
print("posix_spawn:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
pid = os.posix_spawnp("sh", ["sh", "-c", "exit 5"], dict(os.environ))
print("posix_spawnp:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
try:
    os.waitpid(-1, 0)
except ChildProcessError as e:
    print("no more children:", e.errno, flush=True)
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=lambda: dict(TEST_ENV))
    expect_exit: int = 0


def _which(prog: str) -> str:
    path = shutil.which(prog, path=TEST_ENV["PATH"])
    assert path, f"{prog} is not installed on this host"
    return path


CASES = [
    Case("sh-pipes", ("/bin/sh", "-c", SH_PIPES)),
    Case("sh-command-substitution", ("/bin/sh", "-c", SH_SUBST)),
    Case("sh-background-and-wait", ("/bin/sh", "-c", SH_JOBS)),
    Case("sh-redirections", ("/bin/sh", "-c", SH_REDIRECT)),
    Case("sh-here-documents", ("/bin/sh", "-c", SH_HEREDOC)),
    Case("bash-pipes-and-jobs", ("/bin/bash", "-c", SH_PIPES + SH_JOBS)),
    Case("xargs", ("/bin/sh", "-c", XARGS)),
    Case("find-exec", ("/bin/sh", "-c", FIND_EXEC)),
    Case("tar-pipe", ("/bin/sh", "-c", TAR_PIPE)),
    Case("gcc", ("/bin/sh", "-c", GCC)),
    Case("git", ("/bin/sh", "-c", GIT), env=GIT_ENV),
    Case("python-subprocess", ("/usr/bin/python3", "-c", PYTHON)),
]
IDS = [c.name for c in CASES]


def _native(case: Case) -> Outcome:
    return run_native(case.argv[0], case.argv[1:], env=case.env, timeout=120, cwd="/")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_native(case):
    native = _native(case)
    assert native.exit_code == case.expect_exit and native.signal == 0, (
        f"{case.name} natively: {native.describe()}\n{native.stdout.decode(errors='replace')}"
        f"\n{native.stderr.decode(errors='replace')}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_case_same_as_native(case, sandbox):
    native = _native(case)
    assert native.exit_code == case.expect_exit, native.describe()
    boxed = run_sandbox(case.argv[0], case.argv[1:], env=case.env, timeout=RUN_TIMEOUT, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what=case.name)


def _bash_script(tmp_path: Path) -> str:
    script = tmp_path / "script.bash"
    script.write_text(BASH_SCRIPT)
    script.chmod(0o755)
    return str(script)


def test_bash_script_native(tmp_path):
    native = run_native(_bash_script(tmp_path), timeout=120, cwd="/")
    assert native.exit_code == 0, native.stderr
    assert b"fib 21" in native.stdout and native.stdout.endswith(b"exit trap\n")


def test_bash_script_same_as_native(sandbox, tmp_path):
    """A bash script file (functions, recursion through $(...), arrays, process
    substitution, pipelines, PIPESTATUS, traps) run by its #! line."""
    script = _bash_script(tmp_path)
    native = run_native(script, timeout=120, cwd="/")
    boxed = run_sandbox(script, timeout=RUN_TIMEOUT, sandbox=sandbox, cwd="/")
    assert_same_outcome(native, boxed, what="bash script")


# ---------------------------------------------------------------- make, in a mounted directory

MAKEFILE = """\
SRCS := one.c two.c three.c
OBJS := $(SRCS:.c=.o) main.o
CFLAGS := -O1
all: prog
\t./prog
prog: $(OBJS)
\t$(CC) -o $@ $^
%.o: %.c
\t$(CC) $(CFLAGS) -c -o $@ $<
main.o: gen.h
gen.h:
\tprintf '#define GEN %d\\n' $(shell echo $$((6 * 7))) > $@
list:
\t@for f in $(SRCS); do echo "source $$f"; done
clean:
\trm -f *.o prog gen.h
.PHONY: all list clean
"""
SOURCES = {
    "one.c": "int one(void) { return 1; }\n",
    "two.c": "int two(void) { return 2; }\n",
    "three.c": "int three(void) { return 3; }\n",
    "main.c": '#include <stdio.h>\n#include "gen.h"\nint one(void), two(void), three(void);\n'
              'int main(void) { printf("sum %d gen %d\\n", one() + two() + three(), GEN); return 0; }\n',
}
MAKE_STEPS = "make && make list && make prog && make clean && make -j2 && make -j2 prog && make clean"


def _make_dir(path: Path) -> Path:
    path.mkdir()
    (path / "Makefile").write_text(MAKEFILE)
    for name, text in SOURCES.items():
        (path / name).write_text(text)
    return path


def test_make_native(tmp_path):
    native = run_native("/bin/sh", ["-c", MAKE_STEPS], timeout=120, cwd=_make_dir(tmp_path / "native"))
    assert native.exit_code == 0, native.stderr
    assert native.stdout.count(b"sum 6 gen 42\n") == 2 and b"'prog' is up to date" in native.stdout


def test_make_same_as_native(platform_name, tmp_path):
    """make and make -j2 (recipes, a pattern rule, $(shell), a shell loop) in a host
    directory mounted read-write at /work; the tree is left as native's is."""
    import kvmbox
    native = run_native("/bin/sh", ["-c", MAKE_STEPS], timeout=120, cwd=_make_dir(tmp_path / "native"))
    host = _make_dir(tmp_path / "boxed")
    with kvmbox.Sandbox(platform=platform_name, timeout=RUN_TIMEOUT, mounts=[f"{host}:/work:rw"]) as sb:
        r = sb.run(["/bin/sh", "-c", MAKE_STEPS], env=dict(TEST_ENV), cwd="/work")
    assert_same_outcome(native, Outcome(r.exit_code, r.signal, r.stdout, r.stderr), what="make")
    assert sorted(p.name for p in host.iterdir()) == sorted(p.name for p in (tmp_path / "native").iterdir())
