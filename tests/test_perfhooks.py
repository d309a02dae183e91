"""perfhooks: the daemon's task-bound perf event (the scheduler's perf
hooks kept on for CRIU's breakpoints)."""

import fcntl
import os
import platform

import pytest

from twistedock.backend.runtime import perfhooks


def _kind(fd: int) -> str:
    return os.readlink("/proc/self/fd/%d" % (fd,))


@pytest.mark.skipif(platform.machine() not in perfhooks.SYSCALL, reason="perf_event_open's number unknown here")
def test_hold_opens_one_perf_event_bound_to_this_process(monkeypatch):
    monkeypatch.setattr(perfhooks, "_held", [])
    fd = perfhooks.hold()
    if fd is None:
        pytest.skip("this kernel refuses perf events to this process (perf_event_paranoid, no CAP_PERFMON)")
    try:
        assert _kind(fd) == "anon_inode:[perf_event]"
        # Held once: a second call gives the same descriptor.
        assert perfhooks.hold() == fd
        # Not inherited by the daemon's children.
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)


def test_hold_on_an_unknown_machine_holds_nothing(monkeypatch):
    monkeypatch.setattr(perfhooks, "_held", [])
    monkeypatch.setattr(perfhooks.platform, "machine", lambda: "pdp11")
    assert perfhooks.hold() is None
    assert perfhooks._held == []
