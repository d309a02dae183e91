"""
What keeps the reactor answering while the machine is busy.

Every request is answered on the reactor thread. During a container churn
the two things it waits for are a CPU (the churn's runc, conmon and netavark
processes share the cores with it) and the GIL (the daemon's pool threads).
Three settings, made once as the daemon starts:

 - the reactor thread's nice value (L{REACTOR_NICE}), with
   C{SCHED_RESET_ON_FORK}: nothing it starts, thread or process, inherits
   it, so runc, conmon, the containers and the pool threads keep nice 0;
 - the GIL switch interval (L{SWITCH_INTERVAL});
 - the heap built at start-up frozen out of the cyclic collector
   (C{gc.freeze}), so that a full collection walks only what was made since.
"""

import gc
import os
import sys
import threading

from .logs import Logger

log = Logger()

#: The daemon's GIL switch interval, seconds (Python's default is 5 ms):
#: a pool thread doing Python work (json, directory walks) keeps the GIL
#: that long whenever the reactor thread wants it back, and each request is
#: answered on the reactor. C{TWISTEDOCK_SWITCH_INTERVAL} (seconds) sets
#: another, 0 keeps Python's.
SWITCH_INTERVAL = 0.001

#: The reactor thread's nice value. C{TWISTEDOCK_REACTOR_NICE} sets another
#: (-20 to 19), 0 leaves the thread as it is.
REACTOR_NICE = -10


def switch_interval(environ=os.environ) -> float:
    """The switch interval the daemon sets (0: Python's own)."""
    try:
        value = float(environ.get("TWISTEDOCK_SWITCH_INTERVAL", SWITCH_INTERVAL))
    except ValueError:
        return SWITCH_INTERVAL
    return value if value > 0 else 0.0


def reactor_nice(environ=os.environ) -> int:
    """The nice value the daemon gives its reactor thread (0: none)."""
    try:
        value = int(environ.get("TWISTEDOCK_REACTOR_NICE", REACTOR_NICE))
    except ValueError:
        return REACTOR_NICE
    return max(-20, min(19, value))


def prioritize_this_thread(nice: int) -> bool:
    """Give the calling thread C{nice}, and C{SCHED_RESET_ON_FORK} so that
    the threads and processes it starts get nice 0 (the kernel resets a
    negative nice value at each clone). False, logged, where either is
    refused (no CAP_SYS_NICE): the thread is then left as it was."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER | os.SCHED_RESET_ON_FORK, os.sched_param(0))
    except (AttributeError, OSError) as e:
        log.warn("the reactor thread keeps its priority: SCHED_RESET_ON_FORK refused ({error})", error=e)
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as e:
        log.warn("the reactor thread keeps its priority: nice {nice} refused ({error})", nice=nice, error=e)
        return False
    return True


def make_responsive(reactor, environ=os.environ) -> None:
    """The three settings, from the thread that will run the reactor; the
    heap is frozen once the reactor has started (the daemon's start-up
    done)."""
    interval = switch_interval(environ)
    if interval:
        sys.setswitchinterval(interval)
    nice = reactor_nice(environ)
    if nice and prioritize_this_thread(nice):
        log.info("reactor thread at nice {nice}", nice=nice)
    reactor.addSystemEventTrigger("after", "startup", gc.freeze)
