"""Child processes that never outlive the `tilescope up` supervisor."""

import os
import signal
import sys


def detach_but_die_with_parent() -> None:
    """In a child before exec: its own session (Ctrl-C reaches only the supervisor, which stops the
    children in order), and SIGTERM when the supervisor dies, even by SIGKILL, so nothing is orphaned."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
