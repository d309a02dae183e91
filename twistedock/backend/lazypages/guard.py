"""
The page server's guard: a small process, started beside each lazy
checkpoint, that holds the one connection to CRIU's page server and joins
it to the daemon's (over a unix socket in the dump's work directory).

Why a process of its own: CRIU ends a lazy dump successfully (and kills
the frozen process) as soon as its client disconnects, whether or not the
client had every page.  If the daemon held that connection itself, its
death (SIGKILL, a crash) would close it and lose the process on both
sides.  The guard outlives the daemon: when the daemon's side ends without
the client's final flush (see L{protocol}), or never comes, it kills CRIU
instead, which leaves the process running again on the source, untouched.

    python -m twistedock.backend.lazypages.guard SOCKET PORT RUNC_PID TIMEOUT [criu] [--net=PATH]

(With C{criu}, RUNC_PID is CRIU's own pid: the daemon's C{criu swrk},
which dumps in its own process; else CRIU is runc's child.  With
C{--net=PATH}, CRIU dumps from inside the container's network namespace
bound at PATH, whose loopback its page server listens on: the guard
joins that namespace before it connects.)

Only the standard library: it starts in milliseconds, during the dump.
"""

import os
import select
import signal
import socket
import struct
import sys
import time

IOV_SIZE = 24
FLUSH_COMMANDS = (0x1023, 0x1024)


def child_pids(pid: int):
    """The children of C{pid} (CRIU, under runc)."""
    found = []
    try:
        tasks = os.listdir("/proc/%d/task" % (pid,))
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found.extend(int(p) for p in f.read().split())
        except (OSError, ValueError):
            pass
    return found


def kill_criu(runc_pid: int, itself: bool = False) -> None:
    """SIGKILL CRIU (runc's children, or C{runc_pid} itself and its
    children): the process it froze runs on."""
    for pid in ([runc_pid] if itself else []) + child_pids(runc_pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


#: The network namespace flag of setns(2).
CLONE_NEWNET = 0x40000000


def enter_netns(path: str) -> None:
    """This process (one thread) moved into the network namespace bound at
    C{path} (setns(2) through libc: Python 3.11 has no C{os.setns})."""
    import ctypes  # (Only here: the guard's start stays quick without it.)

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, "setns into %s: %s" % (path, os.strerror(error)))
    finally:
        os.close(fd)


def connect_page_server(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def relay(daemon: socket.socket, criu: socket.socket) -> bool:
    """Join the two until one ends; whether the client's flush was seen."""
    buffered = b""
    flushed = False
    daemon_open = True
    for s in (daemon, criu):
        s.setblocking(True)
        s.settimeout(None)
    try:
        # Requests are 24 bytes, several in flight: not held back by Nagle.
        criu.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    while True:
        readable, _, _ = select.select([daemon, criu] if daemon_open else [criu], [], [])
        if criu in readable:
            try:
                data = criu.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                return flushed
            try:
                daemon.sendall(data)
            except OSError:
                daemon_open = False
                if not flushed:
                    return False
        if daemon_open and daemon in readable:
            try:
                data = daemon.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                daemon_open = False
                if not flushed:
                    return False
                # The client had every page: CRIU may finish.
                criu.shutdown(socket.SHUT_WR)
                continue
            buffered += data
            while len(buffered) >= IOV_SIZE:
                if struct.unpack_from("<I", buffered, 0)[0] in FLUSH_COMMANDS:
                    flushed = True
                buffered = buffered[IOV_SIZE:]
            criu.sendall(data)


def main(argv) -> int:
    path, port, runc_pid, timeout = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    itself = "criu" in argv[4:]
    netns = [a[len("--net="):] for a in argv[4:] if a.startswith("--net=")]
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if netns:
        # (Before anything else: a namespace that cannot be joined is a
        # page server that cannot be reached, and the dump is given up.)
        try:
            enter_netns(netns[0])
        except OSError:
            kill_criu(runc_pid, itself)
            return 1
    # Not the daemon's process group: what ends the daemon's group does not end this.
    try:
        os.setsid()
    except OSError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(1)
    # (The daemon waits for this before it connects.)
    try:
        os.write(1, b"listening\n")
    except OSError:
        pass
    # Waiting for the daemon's connection: given up after TIMEOUT, or as
    # soon as the daemon that started this guard is gone.
    parent = os.getppid()
    deadline = time.monotonic() + timeout
    listener.settimeout(0.1)
    try:
        while True:
            try:
                daemon, _ = listener.accept()
                break
            except socket.timeout:
                if os.getppid() != parent or time.monotonic() > deadline:
                    kill_criu(runc_pid, itself)
                    return 1
    except OSError:
        kill_criu(runc_pid, itself)
        return 1
    finally:
        listener.close()
        for remove in (os.unlink, os.rmdir):
            try:
                remove(path if remove is os.unlink else os.path.dirname(path))
            except OSError:
                pass
    try:
        criu = connect_page_server(port, time.monotonic() + 10)
    except OSError:
        kill_criu(runc_pid, itself)
        daemon.close()
        return 1
    try:
        complete = relay(daemon, criu)
    except Exception:
        complete = False
    if not complete:
        kill_criu(runc_pid, itself)
        return 1
    # Wait for CRIU to finish with its client before letting it go.
    try:
        criu.settimeout(30)
        while criu.recv(1 << 16):
            pass
    except OSError:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
