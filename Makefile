# kvmbox: every task a person needs.  On a fresh machine `make test` and `make demo` set everything up.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SYSDEPS := $(VENV)/.sysdeps

.PHONY: install sysdeps programs test demo bench peers clean

install: $(STAMP)

# Debian packages the tests and demo need (musl-gcc for the musl builds).
$(SYSDEPS):
	@if ! command -v musl-gcc >/dev/null 2>&1; then \
	  echo "installing musl-tools (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat  # a plain .pth: no import hook at start-up
	$(PY) -m compileall -q kvmbox
	@touch $@

sysdeps: $(SYSDEPS)

programs: $(SYSDEPS)
	$(MAKE) -s -C tests/programs -j2
	$(MAKE) -s -C benchmarks/programs -j2

test: install programs
	$(PY) -m pytest -q tests

demo: install programs
	@$(PY) -m kvmbox info
	@echo; echo '$$ kvmbox run tests/programs/bin/glibc/hello   (static glibc)'
	@$(PY) -m kvmbox run tests/programs/bin/glibc/hello
	@echo; echo '$$ kvmbox run tests/programs/bin/musl/hello    (static musl)'
	@$(PY) -m kvmbox run tests/programs/bin/musl/hello
	@echo; echo '$$ kvmbox run /bin/ls -la /etc/hostname /etc/os-release   (the host'"'"'s dynamic ls, via ld.so)'
	@$(PY) -m kvmbox run /bin/ls -la /etc/hostname /etc/os-release
	@echo; echo '$$ kvmbox run --strace /bin/cat /etc/hostname   (every syscall, answered by the Sentry)'
	@$(PY) -m kvmbox run --strace /bin/cat /etc/hostname
	@echo; echo '$$ kvmbox run python3 -c "..."   (the host'"'"'s python3; writes land in the overlay, not the host)'
	@$(PY) -m kvmbox run python3 -c "import hashlib, json, os, sqlite3; \
	open('/etc/kvmbox-demo', 'w').write('written inside'); \
	db = sqlite3.connect(':memory:'); db.execute('create table t (x)'); \
	db.executemany('insert into t values (?)', [(i,) for i in range(10)]); \
	print(json.dumps({'sum': db.execute('select sum(x) from t').fetchone()[0], \
	'sha256': hashlib.sha256(b'kvmbox').hexdigest()[:16], 'uname': os.uname().release, \
	'in sandbox': open('/etc/kvmbox-demo').read()}))"
	@echo "on the host: /etc/kvmbox-demo exists? $$(test -e /etc/kvmbox-demo && echo yes || echo no)"
	@echo; echo '$$ kvmbox run env sh -c "exec /usr/bin/env python3 -c ..."   (execve in place: env, sh and #!/usr/bin/env chains)'
	@$(PY) -m kvmbox run env LANG=C sh -c 'exec /usr/bin/env python3 -c "import os, sys; \
	print(\"pid\", os.getpid(), \"after three execs:\", os.path.basename(sys.executable), os.environ[\"LANG\"])"'
	@echo; echo '$$ kvmbox run --platform ptrace /usr/bin/sha256sum /etc/passwd   (same Sentry, ptrace platform)'
	@$(PY) -m kvmbox run --platform ptrace /usr/bin/sha256sum /etc/passwd
	@echo; echo '$$ kvmbox run wc -c < /etc/os-release   (stdin is the shell'"'"'s own open file: fstat, lseek)'
	@$(PY) -m kvmbox run wc -c < /etc/os-release
	@echo; echo '$$ kvmbox run sh -c "... | grep -c conf; $$(seq 3 | tr ...); sleep 0.1 & wait"   (processes: fork, pipes, wait)'
	@$(PY) -m kvmbox run sh -c 'echo "$$(ls /etc | grep -c conf) names in /etc end in conf"; \
	echo "pid $$$$ forked: $$(seq 3 | tr "\n" " ")"; sleep 0.1 & wait $$!; echo "wait: $$?"'
	@echo; echo '$$ kvmbox run --platform ptrace python3 -c "subprocess.run(..., shell=True)"   (Python subprocess on ptrace)'
	@$(PY) -m kvmbox run --platform ptrace python3 -c "import os, subprocess; \
	r = subprocess.run('echo hi | tr a-z A-Z', shell=True, capture_output=True); \
	print('pid', os.getpid(), 'ran a shell pipeline:', r.stdout, 'status', r.returncode)"
	@echo; echo '$$ kvmbox run python3 -c "... signal.alarm(1); signal.pause()"   (timers: the signal interrupts the wait)'
	@$(PY) -m kvmbox run python3 -c "import signal, time; t = time.monotonic(); \
	signal.signal(signal.SIGALRM, lambda *a: print('SIGALRM after %.1f s' % (time.monotonic() - t))); \
	signal.alarm(1); signal.pause()"
	@echo; echo '$$ kvmbox run python3 -c "... ThreadPoolExecutor ... asyncio.to_thread ..."   (threads, in parallel)'
	@$(PY) -m kvmbox run python3 -c "import asyncio, concurrent.futures as cf, hashlib, threading; \
	ex = cf.ThreadPoolExecutor(4); \
	print('4 threads:', list(ex.map(lambda i: hashlib.sha256(bytes([i]) * 100000).hexdigest()[:8], range(4)))); \
	print('asyncio.to_thread in a worker thread:', \
	asyncio.run(asyncio.to_thread(lambda: threading.current_thread() is not threading.main_thread())))"
	@echo; echo '$$ kvmbox run --platform ptrace tests/programs/bin/glibc/pthreads | tail -n 4   (pthreads on ptrace: one stub thread per thread)'
	@$(PY) -m kvmbox run --platform ptrace tests/programs/bin/glibc/pthreads | tail -n 4
	@echo; echo '$$ kvmbox run tests/programs/bin/glibc/fpmath'
	@$(PY) -m kvmbox run tests/programs/bin/glibc/fpmath

# The peers `make bench` compares with (benchmarks/peers.py), installed here only: the tests
# never need them.  A failed install leaves their cells "n/a: ... not installed".
peers:
	@missing=""; \
	command -v proot >/dev/null 2>&1 || missing="$$missing proot"; \
	command -v runsc >/dev/null 2>&1 || missing="$$missing runsc"; \
	command -v qemu-x86_64 >/dev/null 2>&1 || missing="$$missing qemu-user"; \
	if [ -n "$$missing" ]; then \
	  echo "installing the peers for make bench:$$missing (apt-get)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "could not install$$missing: their benchmark cells will say n/a"; \
	fi

bench: install programs peers
	$(PY) -m pytest -q benchmarks

clean:
	rm -rf $(VENV) tests/programs/bin benchmarks/programs/bin .pytest_cache
