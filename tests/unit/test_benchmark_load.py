"""The throughput benchmark's competing load: whose session it runs in, and that it stops."""

import os
import sys
import time
from pathlib import Path

import pytest

from benchmarks.throughput import CompetingLoad

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _live_members(session: int) -> set[int]:
    """Pids of the running (not zombie) processes of a session, from /proc/PID/stat."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[3]) == session and fields[0] not in ("Z", "X"):
            out.add(int(stat.parent.name))
    return out


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_load_in_its_own_session_is_one_session_of_n_busy_processes_and_stops():
    with CompetingLoad(2, own_session=True) as load:
        leader = load.procs[0].pid
        assert os.getsid(leader) == leader != os.getsid(0)  # one new session, not ours
        assert _wait_for(lambda: len(_live_members(leader)) == 2)  # the leader and its fork
    assert _wait_for(lambda: not _live_members(leader))


def test_a_load_in_our_session_is_n_processes_of_our_session():
    ours = os.getsid(0)
    with CompetingLoad(2) as load:
        assert len(load.procs) == 2
        assert all(os.getsid(p.pid) == ours for p in load.procs)
    assert all(p.poll() is not None for p in load.procs)
