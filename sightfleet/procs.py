"""Child-process hygiene shared by the stack supervisor and the local EC2 host."""
from __future__ import annotations

import ctypes
import signal

# Loaded at import: between fork and exec the child only calls into it.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if its parent dies, so nothing outlives the tree."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
