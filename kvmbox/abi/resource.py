"""Resource limits (getrlimit(2)): the resource numbers the Sentry checks, and 'no limit'."""
from __future__ import annotations

RLIM_INFINITY = (1 << 64) - 1
RLIMIT_STACK = 3                     # the most a stack may grow to (bytes)
RLIMIT_AS = 9                        # the most address space a process may map (bytes)
