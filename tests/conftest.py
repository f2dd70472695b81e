import os
import threading

import pytest

from racelab.loops import available_kinds, new_loop

# Loop kinds that run the fixed transports: every available kind except
# those built to lose data on purpose.
FIXED_KINDS = [k for k in available_kinds() if not k.endswith("-2018")]


@pytest.fixture(params=FIXED_KINDS)
def loop_kind(request):
    """Each available loop kind whose transports should lose nothing."""
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _loops_warmed_up():
    # Some loops keep process-wide descriptors from their first use (libuv
    # opens a signal pipe once): build each kind once before any leak
    # check, so that only per-trial leaks are counted.
    for kind in available_kinds():
        new_loop(kind).close()


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves file descriptors or threads behind."""
    fds = open_fds()
    threads = set(threading.enumerate())
    yield
    leaked_threads = [
        t for t in threading.enumerate() if t not in threads and t.is_alive()
    ]
    leaked_fds = open_fds() - fds
    assert not leaked_threads, f"threads left behind: {leaked_threads}"
    assert not leaked_fds, f"file descriptors left behind: {leaked_fds}"
