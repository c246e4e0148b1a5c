"""The "#!" line parser, against fs/binfmt_script.c's rules."""
from __future__ import annotations

import errno

import pytest

from kvmbox.errors import SyscallError
from kvmbox.sentry.program import SCRIPT_HEAD, parse_shebang


@pytest.mark.parametrize("head,want", [
    (b"\x7fELF\x02", None),
    (b"#!/bin/sh\n", (b"/bin/sh", None)),
    (b"#!/bin/sh", (b"/bin/sh", None)),                       # no newline, short file
    (b"#! /usr/bin/env  python3 \n", (b"/usr/bin/env", b"python3")),
    (b"#!/bin/cat -n\nbody", (b"/bin/cat", b"-n")),
    (b"#!\t/bin/awk\t-f  x y \t\n", (b"/bin/awk", b"-f  x y")),   # one argument, inner spaces kept
    (b"#!/bin/sh\r\n", (b"/bin/sh\r", None)),                   # CR is part of the name, as on Linux
    (b"#!/bin/sh\0junk\n", (b"/bin/sh", None)),
    (b"#!/bin/sh -e\0tail\n", (b"/bin/sh", b"-e")),
    (b"#!/bin/sh \0x\n", (b"/bin/sh", b"")),                   # an empty argument
])
def test_parses_like_binfmt_script(head, want):
    assert parse_shebang(head) == want


@pytest.mark.parametrize("head", [b"#!\n", b"#!   \t\n", b"#!" + b" " * 300,
                                  b"#!/" + b"a" * 300])       # the name runs past the buffer
def test_no_interpreter_is_enoexec(head):
    with pytest.raises(SyscallError) as ei:
        parse_shebang(head)
    assert ei.value.errno == errno.ENOEXEC


def test_long_line_with_a_terminated_name_is_cut_at_the_buffer():
    head = b"#!/bin/sh " + b"x" * 400
    name, arg = parse_shebang(head)
    assert name == b"/bin/sh"
    assert arg == b"x" * (SCRIPT_HEAD - 1 - len(b"#!/bin/sh "))   # the last byte is never used
