"""Keep a thread's alternate signal stack across a call into a library that replaces it.

OpenVINO's CPU plugin installs its own alternate signal stack on the thread that compiles a
model and unmaps that stack when the compiled model is destroyed, from whichever thread drops
the last reference. If that is another thread (a garbage collection can run anywhere), the
compiling thread keeps pointing at unmapped memory and the next signal it handles (SIGCHLD
from any child process, SIGALRM, SIGINT) kills the process with SIGSEGV. `kept()` restores
the thread's own stack (faulthandler's, or none) after the call; OpenVINO does not need its
stack afterwards (inference installs none).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SS_ONSTACK = 1


class SignalStack(ctypes.Structure):
    """`stack_t` of sigaltstack(2)."""

    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def current() -> tuple[int, int, int] | None:
    """This thread's alternate signal stack as (address, flags, size); None off Linux."""
    libc = _libc()
    stack = SignalStack()
    if libc is None or libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.sp or 0, stack.flags, stack.size


@contextmanager
def kept() -> Iterator[None]:
    """Run the body, then give this thread back the alternate signal stack it had before."""
    libc = _libc()
    saved = SignalStack()
    if libc is None or libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        if not saved.flags & SS_ONSTACK:  # a stack in use (inside a handler) cannot be set
            libc.sigaltstack(ctypes.byref(saved), None)
