"""The network store's records on disk: each endpoint a file of its own
(a join or leave writes one small file, whatever the number of endpoints),
an older daemon's records (every endpoint inside its network's record)
split at start-up, and what a killed daemon leaves read back."""

import json
import os

from twisted.internet.defer import Deferred, maybeDeferred

from twistedock.backend.events import EventLog
from twistedock.backend.networks.store import NetworkStore

from .fake_runtime import run
from .memory import MemoryNetworkDriver


class FileStore(NetworkStore):
    """The network store writing real files, its thread work done at once."""

    def __init__(self, root, **kwargs):
        super().__init__(None, str(root), EventLog(), MemoryNetworkDriver(), routes=lambda: [], **kwargs)

    def _thread(self, function, *args):
        return maybeDeferred(function, *args)


def files(store, record):
    directory = os.path.join(store.directory, record["Id"] + ".endpoints")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def on_disk(store, record):
    with open(os.path.join(store.directory, record["Id"] + ".json")) as f:
        return json.load(f)


def join(store, cid, network="bridge", name="c"):
    record = store.resolve(network)
    return run(store.reserve(cid, "/" + name, "/run/netns/" + cid[:12], [(record, None)]))


def test_a_join_writes_its_endpoint_only_and_a_leave_removes_it(tmp_path):
    store = FileStore(tmp_path)
    store.load()
    bridge = store.resolve("bridge")
    a, b = "a" * 64, "b" * 64
    join(store, a, name="first")
    join(store, b, name="second")
    assert files(store, bridge) == [a + ".json", b + ".json"]
    assert on_disk(store, bridge)["Endpoints"] == {}
    with open(os.path.join(store.directory, bridge["Id"] + ".endpoints", a + ".json")) as f:
        assert json.load(f) == bridge["Endpoints"][a]
    run(store.leave(a))
    assert files(store, bridge) == [b + ".json"]
    again = FileStore(tmp_path)
    again.load()
    assert again.resolve("bridge")["Endpoints"] == {b: bridge["Endpoints"][b]}
    assert again.resolve("bridge")["Endpoints"][b]["IPAddress"] == "172.17.0.3"


def test_an_older_daemons_record_is_split_at_start_up(tmp_path):
    first = FileStore(tmp_path)
    first.load()
    bridge = first.resolve("bridge")
    cid = "c" * 64
    join(first, cid)
    ep = bridge["Endpoints"][cid]
    # The old format: the endpoints inside the network's record, no files.
    with open(os.path.join(first.directory, bridge["Id"] + ".json"), "w") as f:
        json.dump(bridge, f)
    os.unlink(os.path.join(first.directory, bridge["Id"] + ".endpoints", cid + ".json"))
    again = FileStore(tmp_path)
    again.load()
    assert again.resolve("bridge")["Endpoints"] == {cid: ep}
    assert files(again, bridge) == [cid + ".json"]
    assert on_disk(again, bridge)["Endpoints"] == {}
    # A leave after the split is remembered over a restart.
    run(again.leave(cid))
    third = FileStore(tmp_path)
    third.load()
    assert third.resolve("bridge")["Endpoints"] == {}


def test_a_kill_during_the_split_leaves_both_copies_and_the_files_win(tmp_path):
    first = FileStore(tmp_path)
    first.load()
    bridge = first.resolve("bridge")
    cid = "d" * 64
    join(first, cid)
    old = dict(bridge, Endpoints={cid: dict(bridge["Endpoints"][cid], Name="older")})
    with open(os.path.join(first.directory, bridge["Id"] + ".json"), "w") as f:
        json.dump(old, f)
    again = FileStore(tmp_path)
    again.load()
    assert again.resolve("bridge")["Endpoints"][cid]["Name"] == "c"


def test_half_written_and_orphaned_files_are_left_out(tmp_path):
    store = FileStore(tmp_path)
    store.load()
    bridge = store.resolve("bridge")
    directory = os.path.join(store.directory, bridge["Id"] + ".endpoints")
    os.makedirs(directory)
    with open(os.path.join(directory, ".tmp-x1y2"), "w") as f:
        f.write('{"Name": "cut sh')
    orphan = os.path.join(store.directory, "f" * 64 + ".endpoints")
    os.makedirs(orphan)
    with open(os.path.join(orphan, "e" * 64 + ".json"), "w") as f:
        f.write("{}")
    again = FileStore(tmp_path)
    again.load()
    assert again.resolve("bridge")["Endpoints"] == {}
    assert not os.path.exists(orphan)


def test_a_removed_network_takes_its_endpoint_directory(tmp_path):
    store = FileStore(tmp_path)
    store.load()
    ident = run(store.create({"Name": "n1"}))["Id"]
    cid = "a" * 64
    join(store, cid, network="n1")
    assert files(store, store.resolve("n1")) == [cid + ".json"]
    run(store.leave(cid))
    run(store.remove("n1"))
    assert not os.path.exists(os.path.join(store.directory, ident + ".endpoints"))
    assert not os.path.exists(os.path.join(store.directory, ident + ".json"))


def test_an_endpoints_writes_land_in_the_order_asked(tmp_path):
    """A slow write of a join and the leave's unlink asked meanwhile: the
    unlink waits for the write, so no endpoint comes back after a restart."""
    store = FileStore(tmp_path)
    store.load()
    bridge = store.resolve("bridge")
    pending = []

    def later(function, *args):
        d = Deferred()
        pending.append((d, function, args))
        return d

    store._thread = later
    cid = "a" * 64
    bridge["Endpoints"][cid] = {"Name": "c", "IPAddress": "172.17.0.2"}
    from twisted.internet.defer import ensureDeferred

    written = ensureDeferred(store.save_endpoint(bridge, cid))
    del bridge["Endpoints"][cid]
    removed = ensureDeferred(store.save_endpoint(bridge, cid))
    assert len(pending) == 1  # the unlink waits
    d, function, args = pending.pop(0)
    d.callback(function(*args))
    assert len(pending) == 1
    d, function, args = pending.pop(0)
    d.callback(function(*args))
    assert written.called and removed.called
    assert files(store, bridge) == []
    assert store._endpoint_locks == {}
