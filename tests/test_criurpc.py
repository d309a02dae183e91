"""
CRIU's RPC as the daemon speaks it (L{twistedock.backend.runtime.criurpc}):
the descriptor read from CRIU's generated module, one message a
SOCK_SEQPACKET packet, notifications answered before the final answer,
failures with CRIU's words; and the dump options made from runc's state
(L{twistedock.backend.runtime.criuopts}) as runc 1.1 makes them.

The worker tests run a stand-in for C{criu swrk 3} (a small Python
program speaking the same messages on its fd 3), so they need neither
CRIU nor root; the messages are CRIU's own, from the rpc module that
scripts/install provides (a machine without it fails them, saying so).
"""

import json
import os
import time
import socket
import sys
import textwrap

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from twistedock.backend.runtime import criuopts
from twistedock.backend.runtime.criurpc import (
    RPC_MODULE_PLACES,
    CriuError,
    CriuWorker,
    Messages,
    PacketSocket,
    RpcUnavailable,
    finished,
    load_messages,
    serialized_descriptor,
)


@pytest.fixture(scope="module")
def messages():
    try:
        return load_messages()
    except RpcUnavailable as e:
        pytest.fail("CRIU's rpc module is missing (scripts/install provides it): %s" % (e,), pytrace=False)


# -- the descriptor --------------------------------------------------------------


def test_the_descriptor_is_read_not_run(tmp_path, messages):
    with open(messages.origin, "r") as f:
        source = f.read()
    data = serialized_descriptor(source)
    # A module whose code would fail if run still gives its descriptor.
    poisoned = "raise SystemExit('ran')\nX = _pool.AddSerializedFile(%r)\n" % (data,)
    assert serialized_descriptor(poisoned) == data
    path = tmp_path / "rpc_pb2.py"
    path.write_text(poisoned)
    loaded = load_messages([str(tmp_path / "missing.py"), str(path)])
    assert loaded.origin == str(path)
    assert loaded.enum("criu_req_type", "DUMP") == 1


def test_unusable_modules_say_why(tmp_path):
    with pytest.raises(RpcUnavailable, match="not installed"):
        load_messages([str(tmp_path / "none.py")])
    with pytest.raises(RpcUnavailable, match="no serialized descriptor"):
        serialized_descriptor("x = 1\n")
    with pytest.raises(RpcUnavailable, match="does not load"):
        Messages(b"\xff\xff not a descriptor")
    assert RPC_MODULE_PLACES[0] == "/opt/twistedock/lib/criu/rpc_pb2.py"


def test_requests_carry_the_options(messages):
    req = messages.request(
        "DUMP", images_dir_fd=7, leave_running=True, external=["net[1]:extRootNetNS"],
        ext_mnt=[{"key": "/etc/hosts", "val": "/etc/hosts"}], network_lock=messages.enum("criu_network_lock_method", "NFTABLES"),
    )
    parsed = messages.Request.FromString(req.SerializeToString())
    assert parsed.type == messages.enum("criu_req_type", "DUMP")
    assert parsed.opts.images_dir_fd == 7 and parsed.opts.leave_running
    assert list(parsed.opts.external) == ["net[1]:extRootNetNS"]
    assert [(m.key, m.val) for m in parsed.opts.ext_mnt] == [("/etc/hosts", "/etc/hosts")]
    assert messages.enum_name("criu_network_lock_method", parsed.opts.network_lock) == "NFTABLES"
    # A sub-message from a dict: a lazy dump's page server.
    lazy = messages.Request.FromString(messages.request(
        "DUMP", lazy_pages=True, ps={"port": 4711}, config_file="/x/lazy-pages.conf").SerializeToString())
    assert lazy.opts.lazy_pages and lazy.opts.ps.port == 4711 and lazy.opts.config_file == "/x/lazy-pages.conf"
    # No options: no opts message at all (VERSION, FEATURE_CHECK).
    assert not messages.request("VERSION").HasField("opts")


# -- one packet a message ---------------------------------------------------------


class _Reactor:
    """What PacketSocket asks of a reactor."""

    def __init__(self):
        self.readers = []

    def addReader(self, reader):
        self.readers.append(reader)

    def removeReader(self, reader):
        self.readers.remove(reader)


def test_each_packet_arrives_whole_and_alone():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    got, closed = [], []
    fake = _Reactor()
    packets = PacketSocket(fake, ours, got.append, closed.append, size=64)
    assert fake.readers == [packets]
    theirs.send(b"one")
    theirs.send(b"two" * 10)
    packets.doRead()
    packets.doRead()
    assert got == [b"one", b"two" * 10]
    packets.doRead()  # nothing more to read yet, nothing closed
    assert closed == [] and packets.connected
    packets.send(b"answer")
    assert theirs.recv(100) == b"answer"
    # The end of the peer reads as an empty packet (CRIU sends none).
    theirs.close()
    packets.doRead()
    assert closed == [None] and fake.readers == [] and not packets.connected


def test_a_packet_too_large_closes_the_socket():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    got, closed = [], []
    packets = PacketSocket(_Reactor(), ours, got.append, closed.append, size=8)
    theirs.send(b"x" * 9)
    packets.doRead()
    assert got == [] and closed == ["a packet larger than 8 bytes"]
    with pytest.raises(Exception, match="closed"):
        packets.send(b"late")
    theirs.close()


# -- a worker ---------------------------------------------------------------------

#: A stand-in for `criu swrk 3`: it reads one request, sends the
#: notifications the test asks for (each waiting for our answer), then the
#: final answer; what it was told is written to a file.
FAKE_CRIU = textwrap.dedent(
    """\
    import json, os, socket, sys
    sys.path[:0] = json.loads(os.environ["FAKE_PATH"])
    from twistedock.backend.runtime.criurpc import load_messages
    m = load_messages([os.environ["FAKE_RPC"]])
    assert sys.argv[1:] == ["swrk", "3"], sys.argv
    sk = socket.socket(fileno=3)
    req = m.Request.FromString(sk.recv(65536))
    seen = {"type": m.enum_name("criu_req_type", req.type), "notify": []}
    for script in os.environ.get("FAKE_NOTIFY", "").split():
        resp = m.Response(type=m.enum("criu_req_type", "NOTIFY"), success=True)
        resp.notify.script = script
        resp.notify.pid = 42
        sk.send(resp.SerializeToString())
        answer = m.Request.FromString(sk.recv(65536))
        seen["notify"].append([m.enum_name("criu_req_type", answer.type), answer.notify_success])
        if not answer.notify_success:
            break
    ok = os.environ.get("FAKE_FAIL") is None and all(ok for _, ok in seen["notify"])
    if os.environ.get("FAKE_DIE"):
        os.write(2, b"Error (criu.c:1): it broke\\n")
        sys.exit(3)
    resp = m.Response(type=req.type, success=ok)
    if not ok:
        resp.cr_errno = 5
        resp.cr_errmsg = "it did not work"
    # (What it saw is there, whole, before the daemon has the answer.)
    with open(os.environ["FAKE_SEEN"] + ".tmp", "w") as f:
        json.dump(seen, f)
    os.rename(os.environ["FAKE_SEEN"] + ".tmp", os.environ["FAKE_SEEN"])
    sk.send(resp.SerializeToString())
    sk.recv(10)  # until the daemon closes its end
    """
)


@pytest.fixture
def fake_criu(tmp_path, messages):
    script = tmp_path / "criu"
    script.write_text("#!%s\n%s" % (sys.executable, FAKE_CRIU))
    script.chmod(0o755)
    seen = tmp_path / "seen.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {"FAKE_PATH": json.dumps([root] + sys.path), "FAKE_RPC": messages.origin, "FAKE_SEEN": str(seen)}

    def worker(**extra):
        environment = dict(os.environ, **env)
        environment.update(extra)
        return CriuWorker(reactor, str(script), messages, env=environment)

    def told():
        with open(seen) as f:
            return json.load(f)

    return worker, told


@pytest_twisted.ensureDeferred
async def test_a_request_and_its_notifications(fake_criu, messages):
    worker, told = fake_criu
    w = worker(FAKE_NOTIFY="network-lock post-dump")
    heard = []

    def notify(script, pid):
        heard.append((script, pid))
        if script == "post-dump":
            d = Deferred()
            reactor.callLater(0.01, d.callback, None)
            return d
        return None

    answer = await w.call(messages.request("DUMP", images_dir_fd=3), notify)
    assert answer.success and messages.enum_name("criu_req_type", answer.type) == "DUMP"
    assert heard == [("network-lock", 42), ("post-dump", 42)]
    assert await finished(w) == 0
    assert told() == {"type": "DUMP", "notify": [["NOTIFY", True], ["NOTIFY", True]]}


@pytest_twisted.ensureDeferred
async def test_a_failed_notification_fails_the_request(fake_criu, messages):
    worker, told = fake_criu
    w = worker(FAKE_NOTIFY="post-restore")

    def notify(script, pid):
        raise ValueError("no cgroup for it")

    with pytest.raises(CriuError, match=r"criu failed: type RESTORE errno 5: it did not work \(post-restore: no cgroup for it\)"):
        await w.call(messages.request("RESTORE", images_dir_fd=3), notify)
    await finished(w)
    assert told()["notify"] == [["NOTIFY", False]]


@pytest_twisted.ensureDeferred
async def test_criu_saying_no(fake_criu, messages):
    worker, _ = fake_criu
    w = worker(FAKE_FAIL="1")
    with pytest.raises(CriuError) as caught:
        await w.call(messages.request("DUMP", images_dir_fd=3))
    assert caught.value.errno == 5
    assert str(caught.value) == "criu failed: type DUMP errno 5: it did not work"
    await finished(w)


@pytest_twisted.ensureDeferred
async def test_criu_dying_before_answering(fake_criu, messages):
    worker, _ = fake_criu
    w = worker(FAKE_DIE="1")
    with pytest.raises(CriuError, match=r"CRIU exited \(status 3\) before answering: Error \(criu.c:1\): it broke"):
        await w.call(messages.request("DUMP", images_dir_fd=3))


def test_a_missing_binary(messages, tmp_path):
    with pytest.raises(CriuError, match="cannot run"):
        CriuWorker(reactor, str(tmp_path / "no-criu"), messages)


# -- runc's dump options ----------------------------------------------------------------


def _state(tmp_path, pid):
    netns = tmp_path / "netns"
    netns.write_text("")
    rootfs = "/var/lib/x/merged"
    return {
        "init_process_pid": pid,
        "cgroup_paths": {"freezer": "/sys/fs/cgroup/freezer/td/abc"},
        "external_descriptors": ["/dev/null", "pipe:[1]", "pipe:[2]"],
        "config": {
            "rootfs": rootfs,
            "labels": ["bundle=/run/x", "org.criu.config="],
            "namespaces": [{"type": "NEWNS", "path": ""}, {"type": "NEWNET", "path": str(netns)}],
            "mounts": [
                {"device": "proc", "destination": "/proc"},
                {"device": "bind", "destination": "/etc/hosts", "source": "/x/hosts"},
                {"device": "bind", "destination": rootfs + "/data", "source": "/x/data"},
                {"device": "cgroup", "destination": "/sys/fs/cgroup"},
            ],
            "mask_paths": ["/proc/nothing-here", "/"],
            "devices": [{"path": "/dev/null"}],
        },
    }


def test_dump_options_as_runc_makes_them(tmp_path):
    state = _state(tmp_path, os.getpid())
    options = criuopts.dump_options(
        state, leave_running=False, tcp_established=True, file_locks=True, images_dir_fd=9, work_dir_fd=10,
        unified=True,
    )
    assert options["pid"] == os.getpid() and options["root"] == "/var/lib/x/merged"
    assert options["images_dir_fd"] == 9 and options["work_dir_fd"] == 10
    assert options["log_file"] == "dump.log" and options["log_level"] == 4
    assert options["manage_cgroups"] and options["notify_scripts"] and options["orphan_pts_master"]
    assert not options["leave_running"] and options["tcp_established"] and options["file_locks"]
    # org.criu.config given empty: no configuration file at all.
    assert "config_file" not in options
    ino = os.stat(tmp_path / "netns").st_ino
    assert options["external"] == ["net[%d]:extRootNetNS" % (ino,)]
    assert options["freeze_cgroup"] == "/sys/fs/cgroup/freezer/td/abc"
    # Bind mounts and devices by their place in the container; a masked
    # path that is a directory ("/") is CRIU's to dump, a missing one skipped.
    assert options["ext_mnt"] == [
        {"key": "/etc/hosts", "val": "/etc/hosts"},
        {"key": "/data", "val": "/data"},
        {"key": "/dev/null", "val": "/dev/null"},
    ]


def test_a_network_namespace_left_out_is_joined_back(tmp_path):
    """CRIU run in the container's joined network namespace: the dump names
    it external no more, the restore joins the container's by its path
    (no descriptor to inherit for it), and refuses a container without one."""
    state = _state(tmp_path, os.getpid())
    assert criuopts.joined_netns(state) == str(tmp_path / "netns")
    options = criuopts.dump_options(
        state, leave_running=False, tcp_established=True, file_locks=True, images_dir_fd=9, work_dir_fd=10,
        unified=True, net_left_out=True,
    )
    assert "external" not in options
    options = criuopts.restore_options(state, [], images_dir_fd=9, work_dir_fd=10, root="/r", netns_fd=None,
                                       tcp_established=True, file_locks=True, net_left_out=True)
    assert options["join_ns"] == [{"ns": "net", "ns_file": str(tmp_path / "netns")}]
    assert {"key": "extRootNetNS", "fd": 7} not in options["inherit_fd"]
    state["config"]["namespaces"] = [{"type": "NEWNET", "path": ""}]
    assert criuopts.joined_netns(state) is None
    with pytest.raises(ValueError):
        criuopts.restore_options(state, [], images_dir_fd=9, work_dir_fd=10, root="/r", netns_fd=None,
                                 tcp_established=True, file_locks=True, net_left_out=True)


LAZY = {"lazy_pages": True, "ps": {"port": 4321}, "config_file": "/w/lazy-pages.conf"}


@pytest.mark.parametrize("connections,extra,nsenter,port_free,entered", [
    (False, None, "/usr/bin/nsenter", False, True),
    (True, None, "/usr/bin/nsenter", True, False),  # a lock to take: CRIU outside
    (False, LAZY, "/usr/bin/nsenter", True, True),  # a page server on the namespace's loopback
    (False, LAZY, "/usr/bin/nsenter", False, False),  # its port taken there, or loopback down
    (True, LAZY, "/usr/bin/nsenter", True, False),
    (False, dict(LAZY, ps={}), "/usr/bin/nsenter", True, False),  # no port said
    (False, {"lazy_pages": True, "tcp_skip_in_flight": True}, "/usr/bin/nsenter", True, False),
    (False, None, "", True, False),
])
def test_where_a_dump_s_criu_runs(tmp_path, monkeypatch, connections, extra, nsenter, port_free, entered):
    from twistedock.backend.runtime import criudriver
    from twistedock.backend.runtime.criudriver import CriuDriver

    state = _state(tmp_path, 7)
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "state.json").write_text(json.dumps(state))
    monkeypatch.setattr(criuopts, "has_tcp_connections", lambda pid: connections)
    asked = []
    monkeypatch.setattr(criudriver, "loopback_port_free", lambda path, port: asked.append((path, port)) or port_free)
    driver = CriuDriver(reactor, None, str(tmp_path), None, messages=object())
    driver.nsenter = nsenter
    _, lock, netns = driver._dump_plan("c1", extra)
    assert lock == ("NFTABLES" if connections else "SKIP")
    assert netns == (str(tmp_path / "netns") if entered else None)
    if entered and extra:
        assert asked == [(str(tmp_path / "netns"), 4321)]


@pytest.mark.parametrize("helper_fails", [False, True])
def test_a_dump_s_request_waits_for_what_on_worker_starts(tmp_path, helper_fails):
    """A lazy dump's guard (a Python interpreter's start) kept out of the
    freeze: the request, which begins it, waits for the Deferred
    C{on_worker} returned; its failure fails the dump, the worker killed
    and never asked.  The freeze's time is told (C{timing})."""
    from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed

    from twistedock.backend.runtime.criudriver import CriuDriver

    class Messages:
        def request(self, kind, **options):
            return (kind, options)

    class Worker:
        pid = 99
        transport = None
        asked = []
        killed = []

        def call(self, request, notify):
            self.asked.append(request[0])
            notify("pre-dump", 7)
            return succeed(None)

        def kill(self):
            self.killed.append(True)

        def close(self):
            pass

    driver = CriuDriver(reactor, None, str(tmp_path), lambda f, *a: maybeDeferred(f, *a), messages=Messages())
    driver._dump_plan = lambda container_id, extra: ({}, "SKIP", None)
    driver._dump_options = lambda *args: ({"pid": 7}, [])
    driver.worker = lambda criu, prefix=(): Worker()
    started = Deferred()
    timing = {}
    d = ensureDeferred(driver.dump("/criu", "c1", str(tmp_path), str(tmp_path), leave_running=False,
                                   on_worker=lambda worker, netns: started, timing=timing))
    assert Worker.asked == [] and not d.called
    if helper_fails:
        started.errback(RuntimeError("the guard ended"))
        failure = []
        d.addErrback(failure.append)
        assert failure and failure[0].check(RuntimeError)
        assert Worker.asked == [] and Worker.killed == [True]
    else:
        before = time.monotonic()
        started.callback(None)
        assert d.called and Worker.asked == ["DUMP"] and Worker.killed == []
        # (When CRIU froze the tasks: its pre-dump, for the answer's header.)
        assert before <= timing["Frozen"] <= time.monotonic()


@pytest.fixture
def namespace():
    """A network namespace of a sleeping process's (its path in /proc),
    with C{lo_up} bringing its loopback up."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    path = "/proc/%d/ns/net" % (proc.pid,)
    deadline = time.monotonic() + 10
    while os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    def lo_up():
        subprocess.run(["nsenter", "--net=" + path, "ip", "link", "set", "lo", "up"], check=True)

    yield path, lo_up
    proc.kill()
    proc.wait()


def test_a_port_free_on_a_namespace_s_loopback(namespace):
    """Free only where a page server there can listen and be reached:
    loopback up, the port not taken in that namespace (whatever holds it
    in ours); never a pool thread left in it."""
    import subprocess

    from twistedock.backend.runtime.criudriver import loopback_port_free

    path, lo_up = namespace
    ours_ns = os.stat("/proc/thread-self/ns/net").st_ino
    ours = socket.socket()
    ours.bind(("127.0.0.1", 0))
    ours.listen(1)
    port = ours.getsockname()[1]
    try:
        assert not loopback_port_free(path, port)  # its loopback down
        lo_up()
        assert loopback_port_free(path, port)  # taken in ours, free in its
        holder = subprocess.Popen(["nsenter", "--net=" + path, sys.executable, "-c",
                                   "import socket,sys,time; s=socket.socket(); s.bind(('0.0.0.0', int(sys.argv[1])));"
                                   "s.listen(1); print(1, flush=True); time.sleep(60)", str(port)],
                                  stdout=subprocess.PIPE)
        try:
            assert holder.stdout.readline().strip() == b"1"
            assert not loopback_port_free(path, port)
        finally:
            holder.kill()
            holder.wait()
        assert not loopback_port_free("/nonexistent/netns", port)
        assert os.stat("/proc/thread-self/ns/net").st_ino == ours_ns
    finally:
        ours.close()


def test_masked_directories_external_when_the_restores_know_their_source(tmp_path):
    """A masked directory's tmpfs (runc's empty read-only one) named
    external, unless the container names a CRIU configuration of its own
    (runc's restore would not map it); its source given to the restore."""
    tmpfs = sorted(criuopts.tmpfs_mounts(os.getpid()))
    if not tmpfs:
        pytest.skip("no tmpfs mount here")
    state = _state(tmp_path, os.getpid())
    state["config"]["mask_paths"] = [tmpfs[0], "/proc/nothing-here"]
    state["config"]["labels"] = ["bundle=/run/x"]

    def masked(state, **kw):
        options = criuopts.dump_options(state, leave_running=False, tcp_established=True, file_locks=True,
                                        images_dir_fd=9, work_dir_fd=10, unified=True, **kw)
        return [m for m in options["ext_mnt"] if m["key"] == tmpfs[0]]

    assert masked(state, masked_dirs=True) == [{"key": tmpfs[0], "val": criuopts.MASKED_DIR_KEY}]
    assert masked(state) == []
    state["config"]["labels"] = ["org.criu.config=/etc/mine.conf"]
    assert masked(state, masked_dirs=True) == []
    options = criuopts.restore_options(state, [], images_dir_fd=9, work_dir_fd=10, root="/r", netns_fd=None,
                                       tcp_established=True, file_locks=True, masked_source="/run/td/masked")
    assert {"key": criuopts.MASKED_DIR_KEY, "val": "/run/td/masked"} in options["ext_mnt"]


def test_priming_a_cgroup_migration_moves_this_process_where_it_is(tmp_path):
    """This process written into its own cgroup (v1 names, name=, the
    unified hierarchy): the first that takes it, remembered."""
    from twistedock.backend.runtime import criudriver

    proc = tmp_path / "cgroup"
    proc.write_text("3:name=systemd:/user.slice\n2:cpu,cpuacct:/a/b\n0::/u\n")
    root = tmp_path / "fs"
    (root / "cpu,cpuacct" / "a" / "b").mkdir(parents=True)
    criudriver._primed[:] = []
    assert criudriver.prime_cgroup_migration(str(proc), str(root))
    assert (root / "cpu,cpuacct" / "a" / "b" / "cgroup.procs").read_text() == str(os.getpid())
    assert criudriver._primed == [str(root / "cpu,cpuacct" / "a" / "b" / "cgroup.procs")]
    criudriver._primed[:] = []
    (root / "unified" / "u").mkdir(parents=True)
    proc.write_text("0::/u\n")
    assert criudriver.prime_cgroup_migration(str(proc), str(root))
    assert (root / "unified" / "u" / "cgroup.procs").read_text() == str(os.getpid())
    criudriver._primed[:] = []
    assert not criudriver.prime_cgroup_migration(str(tmp_path / "none"), str(root))


def test_runc_configuration_file_rule():
    assert criuopts.config_file({"labels": ["bundle=/b"]}) == "/etc/criu/runc.conf"
    assert criuopts.config_file({"labels": ["org.criu.config=/etc/mine.conf"]}) == "/etc/mine.conf"
    assert criuopts.config_file({"labels": ["org.criu.config="]}) is None


def test_descriptors_file(tmp_path):
    criuopts.write_descriptors(_state(tmp_path, 1), str(tmp_path))
    with open(tmp_path / "descriptors.json") as f:
        assert json.load(f) == ["/dev/null", "pipe:[1]", "pipe:[2]"]
    assert os.stat(tmp_path / "descriptors.json").st_mode & 0o777 == 0o600


def test_tcp_connections_decide_the_lock():
    # This process's namespace: whatever it holds, the answer is a bool and
    # an unreadable table means "lock".
    assert criuopts.has_tcp_connections(2 ** 22 + 12345) is True
    assert isinstance(criuopts.has_tcp_connections(os.getpid()), bool)


def _fake_net(tmp_path, tcp_inuse: str, tw: str = "0", tcp6_inuse: str = "0") -> str:
    net = tmp_path / "proc" / "7" / "net"
    net.mkdir(parents=True)
    (net / "sockstat").write_text("sockets: used 3\nTCP: inuse %s orphan 0 tw %s alloc 1 mem 0\n" % (tcp_inuse, tw))
    (net / "sockstat6").write_text("TCP6: inuse %s\nUDP6: inuse 0\n" % (tcp6_inuse,))
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    (net / "tcp").write_text(header + "   0: 0100007F:1F90 0100007F:C350 01 00000000:00000000\n")
    (net / "tcp6").write_text(header + "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0\n")
    return str(tmp_path / "proc")


@pytest.mark.parametrize("counts,expected", [
    (("0", "0", "0"), False),  # nothing counted: the tables are not read
    (("1", "0", "0"), True),  # a socket counted: the tables say (an established one)
    (("0", "1", "0"), True),  # a TIME_WAIT: the tables say
    (("0", "0", "1"), True),
])
def test_socket_counters_spare_reading_the_tables(tmp_path, counts, expected):
    assert criuopts.has_tcp_connections(7, _fake_net(tmp_path, *counts)) is expected


def test_unreadable_counters_read_the_tables(tmp_path):
    proc = _fake_net(tmp_path, "0")
    os.unlink(os.path.join(proc, "7", "net", "sockstat6"))
    assert criuopts.has_tcp_connections(7, proc) is True


def test_restore_options_as_runc_makes_them(tmp_path):
    state = _state(tmp_path, os.getpid())
    options = criuopts.restore_options(
        state, ["/sys/fs/cgroup/cpu"], images_dir_fd=9, work_dir_fd=10, root="/var/lib/x/merged", netns_fd=7,
        tcp_established=True, file_locks=True,
    )
    assert options["rst_sibling"] and options["evasive_devices"] and options["root"] == "/var/lib/x/merged"
    assert options["log_file"] == "restore.log" and options["images_dir_fd"] == 9 and options["work_dir_fd"] == 10
    mounts = {m["key"]: m["val"] for m in options["ext_mnt"]}
    assert mounts["/etc/hosts"] == "/x/hosts" and mounts["/data"] == "/x/data"
    assert mounts["/dev/null"] == "/dev/null"
    assert mounts["/sys/fs/cgroup/cpu"].startswith("/sys/fs/cgroup/cpu")
    # The network namespace joined through the inherited descriptor, the
    # pipes runc recorded inherited from CRIU's stdio.
    assert options["inherit_fd"] == [
        {"key": "extRootNetNS", "fd": 7}, {"key": "pipe:[1]", "fd": 1}, {"key": "pipe:[2]", "fd": 2},
    ]
    assert "config_file" not in options
    assert options["lazy_pages"] is False
    # A lazy checkpoint's restore: CRIU asked for lazy pages, as runc asks
    # with --lazy-pages (no page server: criu lazy-pages has it).
    lazy = criuopts.restore_options(
        state, [], images_dir_fd=9, work_dir_fd=10, root="/r", netns_fd=None, tcp_established=True,
        file_locks=True, lazy_pages=True,
    )
    assert lazy["lazy_pages"] is True and "ps" not in lazy and lazy["work_dir_fd"] == 10


class _Driver:
    """What a L{RestoreSession} asks of its L{CriuDriver}."""

    def __init__(self, messages, state_root):
        self.reactor = reactor
        self.messages = messages
        self.state_root = state_root
        self.criu_binary = "/opt/criu"

    def masked_source(self):
        return None

    def shim(self, criu):
        return "/shim"

    def prime_cgroups(self):
        pass

    def run_in_thread(self, f, *args):
        from twisted.internet.defer import maybeDeferred

        return maybeDeferred(f, *args)


def _lazy_session(tmp_path, messages):
    from twistedock.backend.runtime.criudriver import RestoreSession

    state = _state(tmp_path, os.getpid())
    state["config"]["namespaces"] = [{"type": "NEWNS", "path": ""}]
    images, bundle = tmp_path / "images", tmp_path / "bundle"
    images.mkdir()
    bundle.mkdir()
    session = RestoreSession(_Driver(messages, str(tmp_path / "state")), "/opt/criu", "c1", state, str(images),
                             str(bundle), "/r", [], "now", lazy_pages=True)
    criu = session.worker.peer.dup()
    session.release_peer()
    criu.setblocking(False)
    return session, criu


def _nothing_yet(sk):
    try:
        return sk.recv(65536) is None
    except BlockingIOError:
        return True


@pytest_twisted.ensureDeferred
async def test_a_lazy_restore_is_asked_once_its_fetcher_is_ready(tmp_path, messages):
    """The RESTORE request (lazy_pages, the bundle its work directory:
    where criu lazy-pages listens) waits in the daemon until C{ready}
    fired: CRIU connects to criu lazy-pages as the restore begins."""
    from twisted.internet.task import deferLater

    session, criu = _lazy_session(tmp_path, messages)
    try:
        assert session.options["lazy_pages"] is True
        work = session.options["work_dir_fd"]
        assert os.path.samestat(os.fstat(work), os.stat(tmp_path / "bundle"))
        ready = Deferred()
        started = session.start(ready=ready)
        from twisted.internet.defer import ensureDeferred

        restored = ensureDeferred(started)
        await deferLater(reactor, 0.05, lambda: None)
        assert _nothing_yet(criu) and not restored.called
        ready.callback(None)
        await deferLater(reactor, 0.05, lambda: None)
        request = messages.Request.FromString(criu.recv(65536))
        assert messages.enum_name("criu_req_type", request.type) == "RESTORE"
        assert request.opts.lazy_pages
        # CRIU's post-resume: when the restored tasks ran again is noted.
        assert session.resumed is None
        before = time.monotonic()
        notify = messages.Response(type=messages.enum("criu_req_type", "NOTIFY"), success=True)
        notify.notify.script = "post-resume"
        criu.send(notify.SerializeToString())
        await deferLater(reactor, 0.05, lambda: None)
        assert messages.enum_name("criu_req_type", messages.Request.FromString(criu.recv(65536)).type) == "NOTIFY"
        assert before <= session.resumed <= time.monotonic()
        answer = messages.Response(type=request.type, success=True)
        answer.restore.pid = 4321
        criu.send(answer.SerializeToString())
        assert await restored == 4321
    finally:
        criu.close()
        session.close()


@pytest_twisted.ensureDeferred
async def test_a_lazy_restore_whose_fetcher_failed_is_never_asked(tmp_path, messages):
    """C{ready} failed (criu lazy-pages did not start): no request, and
    CRIU's socket closed, so that the CRIU conmon started ends."""
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import deferLater

    from twistedock.errors import InternalError

    session, criu = _lazy_session(tmp_path, messages)
    try:
        ready = Deferred()
        restored = ensureDeferred(session.start(ready=ready))
        ready.errback(InternalError("criu lazy-pages failed (status 1)"))
        with pytest.raises(InternalError, match="lazy-pages failed"):
            await restored
        await deferLater(reactor, 0.05, lambda: None)
        assert criu.recv(65536) == b""
    finally:
        criu.close()
        session.close()


def test_restored_state_is_runc_s():
    state = {"init_process_pid": 1, "init_process_start": 5, "created": "x", "config": {"rootfs": "/r"},
             "namespace_paths": {}}
    fresh = criuopts.restored_state(state, os.getpid(), "2026-12-06T12:00:00.000000001Z")
    assert fresh["init_process_pid"] == os.getpid() and fresh["created"] == "2026-12-06T12:00:00.000000001Z"
    assert fresh["init_process_start"] == criuopts.start_time(os.getpid()) > 0
    assert fresh["namespace_paths"]["NEWNET"] == "/proc/%d/ns/net" % (os.getpid(),)
    assert fresh["config"] == {"rootfs": "/r"} and state["init_process_pid"] == 1
    # The restored process's stdio as they are now (the next dump's
    # descriptors file names them), not the dumped run's.
    assert fresh["external_descriptors"] == [os.readlink("/proc/self/fd/%d" % fd) for fd in range(3)]


def test_restored_state_names_the_new_pipes(tmp_path):
    import subprocess

    child = subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        state = {"init_process_pid": 1, "config": {}, "external_descriptors": ["/dev/null", "pipe:[1]", "pipe:[2]"]}
        fresh = criuopts.restored_state(state, child.pid, "now")
        assert fresh["external_descriptors"][0] == "/dev/null"
        assert fresh["external_descriptors"][1].startswith("pipe:[") and fresh["external_descriptors"][1] != "pipe:[1]"
        assert fresh["external_descriptors"][1] == "pipe:[%d]" % os.fstat(child.stdout.fileno()).st_ino
        assert state["external_descriptors"][1] == "pipe:[1]"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


def test_restorable_state_needs_a_stopped_run_and_its_cgroups(tmp_path):
    from twistedock.backend.runtime.criudriver import restorable_state

    assert restorable_state(str(tmp_path), "gone") is None
    (tmp_path / "c1").mkdir()
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    kept = {"init_process_pid": 2 ** 22 + 7, "init_process_start": 1, "config": {"namespaces": []},
            "cgroup_paths": {"memory": str(cgroup)}}
    (tmp_path / "c1" / "state.json").write_text(json.dumps(kept))
    assert restorable_state(str(tmp_path), "c1") == kept
    # runc's exec fifo still there (created, never started): runc would
    # call the restored container created.
    (tmp_path / "c1" / "exec.fifo").write_text("")
    assert restorable_state(str(tmp_path), "c1") is None
    (tmp_path / "c1" / "exec.fifo").unlink()
    # Its cgroups gone (runc deleted it): runc restores.
    cgroup.rmdir()
    assert restorable_state(str(tmp_path), "c1") is None
    # Still running: not a checkpointed run.
    kept.update(init_process_pid=os.getpid(), init_process_start=criuopts.start_time(os.getpid()), cgroup_paths={})
    (tmp_path / "c1" / "state.json").write_text(json.dumps(kept))
    assert restorable_state(str(tmp_path), "c1") is None


def test_the_freezer_frozen_ahead_of_criu(tmp_path):
    """Frozen before CRIU looks (it would sleep 100 ms on a freezing
    cgroup); a cgroup already frozen (a paused container) is left alone."""
    from twistedock.backend.runtime.criudriver import freeze, thaw

    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "freezer.state").write_text("THAWED\n")
    assert freeze(str(v1)) is True
    assert (v1 / "freezer.state").read_text() == "FROZEN"
    assert freeze(str(v1)) is False
    thaw(str(v1))
    assert (v1 / "freezer.state").read_text() == "THAWED"
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.freeze").write_text("1\n")
    (v2 / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    assert freeze(str(v2)) is False
    thaw(str(v2))
    assert (v2 / "cgroup.freeze").read_text() == "0"
    thaw(str(tmp_path / "gone"))  # quietly


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_the_loopback_of_an_empty_network_namespace_brought_up():
    """A restore makes a container's own network namespace empty (as runc
    restore does), its loopback then brought up by the daemon, from a
    thread that leaves the daemon's own namespace alone."""
    import subprocess

    from twistedock.backend.runtime.criudriver import loopback_up

    before = os.readlink("/proc/self/ns/net")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        for _ in range(200):
            if os.readlink("/proc/%d/ns/net" % holder.pid) != before:
                break
            time.sleep(0.01)

        def lo():
            return subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "ip", "-o", "link", "show", "lo"],
                                  capture_output=True, text=True, check=True).stdout

        assert ",UP" not in lo()
        loopback_up(holder.pid)
        assert ",UP" in lo()
        assert os.readlink("/proc/self/ns/net") == before
        import threading

        assert all(t.name != "loopback-up" for t in threading.enumerate())
    finally:
        holder.kill()
        holder.wait()


def test_the_daemon_s_start_writes_the_restores_runtime_once(tmp_path):
    """L{CriuDriver.ready}, as the daemon starts: the restore's conmon
    runtime (the shim) written then, not in the first restore's downtime,
    and left as it is when it is already right; none without the RPC."""
    from twistedock.backend.runtime.criudriver import SHIM, CriuDriver

    driver = CriuDriver(reactor, None, str(tmp_path / "runc"), None, messages=object(),
                        shim_dir=str(tmp_path / "criu"))
    driver.ready()
    shim = tmp_path / "criu" / "criu-swrk"
    assert shim.read_text() == SHIM and os.access(str(shim), os.X_OK)
    written = shim.stat().st_ino
    driver.ready()
    assert driver.shim("/usr/sbin/criu") == str(shim)
    assert shim.stat().st_ino == written and driver.criu_binary == "/usr/sbin/criu"

    off = CriuDriver(reactor, None, str(tmp_path / "runc2"), None, enabled=False, shim_dir=str(tmp_path / "off"))
    off.ready()
    assert not (tmp_path / "off").exists()
