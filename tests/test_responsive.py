"""
The settings that keep the reactor answering under load: the GIL switch
interval, and the reactor thread's nice value that nothing it starts
inherits.
"""

import os
import subprocess
import threading

import pytest

from twistedock.responsive import REACTOR_NICE, SWITCH_INTERVAL, prioritize_this_thread, reactor_nice, switch_interval


def test_the_daemons_gil_switch_interval():
    """1 ms unless TWISTEDOCK_SWITCH_INTERVAL says otherwise (0 or less:
    Python's own; nonsense: the default)."""
    assert switch_interval({}) == SWITCH_INTERVAL == 0.001
    assert switch_interval({"TWISTEDOCK_SWITCH_INTERVAL": "0.0005"}) == 0.0005
    assert switch_interval({"TWISTEDOCK_SWITCH_INTERVAL": "0"}) == 0.0
    assert switch_interval({"TWISTEDOCK_SWITCH_INTERVAL": "-1"}) == 0.0
    assert switch_interval({"TWISTEDOCK_SWITCH_INTERVAL": "fast"}) == SWITCH_INTERVAL


def test_the_reactor_threads_nice_value():
    """-10 unless TWISTEDOCK_REACTOR_NICE says otherwise (0: none), within
    the kernel's range."""
    assert reactor_nice({}) == REACTOR_NICE == -10
    assert reactor_nice({"TWISTEDOCK_REACTOR_NICE": "0"}) == 0
    assert reactor_nice({"TWISTEDOCK_REACTOR_NICE": "-5"}) == -5
    assert reactor_nice({"TWISTEDOCK_REACTOR_NICE": "-40"}) == -20
    assert reactor_nice({"TWISTEDOCK_REACTOR_NICE": "high"}) == REACTOR_NICE


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative nice value needs root")
def test_what_the_prioritized_thread_starts_keeps_nice_0():
    """The thread gets the nice value; a thread and a process it starts
    get 0, not what they would inherit."""
    seen = {}

    def prioritized():
        tid = threading.get_native_id()
        seen["set"] = prioritize_this_thread(-7)
        seen["own"] = os.getpriority(os.PRIO_PROCESS, tid)

        def child_thread():
            seen["thread"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        t = threading.Thread(target=child_thread)
        t.start()
        t.join()
        seen["process"] = int(subprocess.check_output(["sh", "-c", "cut -d' ' -f19 /proc/self/stat"]))
        seen["spawned"] = int(subprocess.check_output(["cut", "-d ", "-f19", "/proc/self/stat"]))

    t = threading.Thread(target=prioritized)
    t.start()
    t.join()
    assert seen == {"set": True, "own": -7, "thread": 0, "process": 0, "spawned": 0}
