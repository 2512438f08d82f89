"""How many threads a process uses: the labeling default, ``$SPINELABEL_THREADS``, and their limits.

Standard library only, so that the command line can name the limits without
importing numpy or torch.
"""

from __future__ import annotations

import os
import sys

from .errors import InputError

__all__ = ["MAX_REQUESTED_THREADS", "MAX_THREADS", "THREADS_ENV", "passive_openmp", "thread_count"]

#: Most intra-op threads for one labeling process: the U-Net's 2D slices gain little beyond this.
MAX_THREADS = 4
#: Most threads anyone may ask for (``$SPINELABEL_THREADS``, ``train --threads``): far beyond any machine's cores,
#: far below what makes the process fail to start them (20000 did; more overflowed torch's integer).
MAX_REQUESTED_THREADS = 256
#: Environment variable that sets the thread count of a labeling process (default: ``thread_count``).
THREADS_ENV = "SPINELABEL_THREADS"


def passive_openmp() -> bool:
    """Make OpenMP threads sleep, not spin, while they wait; True if it can still take effect.

    Spinning threads (the default ``OMP_WAIT_POLICY=ACTIVE`` behaviour of
    libgomp) burn the cores that other processes on a shared server need: a
    batch became ~12x slower under a competing load (issue 15). The setting is
    read when torch starts OpenMP, so it only takes effect before ``import
    torch``; a value the user set is kept.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def thread_count(requested: int | None = None) -> int:
    """Intra-op threads for this process: ``requested``, else ``$SPINELABEL_THREADS``, else min(4, usable CPUs).

    Raises
    ------
    InputError
        ``$SPINELABEL_THREADS`` is not a whole number from 1 to :data:`MAX_REQUESTED_THREADS`.
    """
    if requested is not None:
        return max(1, int(requested))
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not (env.isascii() and env.isdigit()) or not 1 <= int(env) <= MAX_REQUESTED_THREADS:
            raise InputError(f"{THREADS_ENV}={env!r}: must be a whole number from 1 to {MAX_REQUESTED_THREADS}")
        return int(env)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_THREADS, usable))
