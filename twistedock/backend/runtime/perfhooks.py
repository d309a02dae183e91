"""
The scheduler's hooks for task-bound perf events kept switched on while a
daemon that checkpoints runs (L{hold}).

CRIU stops a task at the end of its parasite (the code it runs inside the
task to dump it) with a hardware breakpoint set through ptrace: a perf
event bound to that task.  On a host where no task-bound perf event
exists, the first such event switches on the scheduler's perf hooks, and
the kernel then waits for an RCU grace period before going on
(C{account_event}: C{static_branch_enable}, then C{synchronize_rcu}):
10-18 ms measured here, spent in the first dump of every process never
dumped or restored before, while it is frozen.  (A dumped or restored
task keeps its breakpoint's event until it exits; a second after the last
such event is gone, the hooks are switched off again.)

One disabled software event bound to the daemon itself keeps the hooks
on: its grace period is waited for once, as the daemon starts (blocking:
in a thread).  What the hooks cost the host's context switches could not
be told apart from noise (a pipe ping-pong, 5-6 us a round trip either
way); any profiler or monitoring agent holding a per-task event does the
same.
"""

import ctypes
import os
import platform
import struct
import time
from typing import Optional

from ...logs import Logger

log = Logger()

#: perf_event_open(2)'s number, by machine.
SYSCALL = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331, "riscv64": 241}

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_DUMMY = 9
#: perf_event_attr's first published size (PERF_ATTR_SIZE_VER0).
ATTR_SIZE = 64
#: Its flags word (disabled is bit 0).
FLAGS_OFFSET = 40
PERF_FLAG_FD_CLOEXEC = 8

#: The event held by this process, once L{hold} opened it.
_held = []


def hold() -> Optional[int]:
    """(Blocking, once: a grace period.)  The descriptor of a disabled dummy
    software event bound to this process (kept open, close-on-exec), or
    None where the kernel refuses one (logged) or the machine is unknown.
    Idempotent."""
    if _held:
        return _held[0]
    number = SYSCALL.get(platform.machine())
    if number is None:
        log.info("perf events not held: unknown machine {machine}", machine=platform.machine())
        return None
    attr = bytearray(ATTR_SIZE)
    struct.pack_into("=IIQ", attr, 0, PERF_TYPE_SOFTWARE, ATTR_SIZE, PERF_COUNT_SW_DUMMY)
    struct.pack_into("=Q", attr, FLAGS_OFFSET, 1)
    buffer = (ctypes.c_char * ATTR_SIZE).from_buffer(attr)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    began = time.monotonic()
    fd = libc.syscall(ctypes.c_long(number), buffer, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(-1),
                      ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        log.info("perf events not held ({error}): a process's first checkpoint waits for the kernel to "
                 "switch its scheduler hooks on", error=os.strerror(code) if code else "refused")
        return None
    _held.append(int(fd))
    log.info("a perf event held for CRIU's breakpoints (the scheduler's hooks on: {ms:.1f} ms)",
             ms=(time.monotonic() - began) * 1000)
    return int(fd)
