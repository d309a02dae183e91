"""The volume routes over an in-memory backend, and the local driver's
store over a temporary directory (no mounts)."""

import json
import os

import pytest
from twisted.internet.defer import ensureDeferred, maybeDeferred
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twistedock.backend.events import EventLog
from twistedock.backend.spec import validate_mount
from twistedock.backend.volumes import VolumeStore
from twistedock.backend.volumes.local import load_all
from twistedock.errors import Conflict, InvalidParameter, NotFound
from twistedock.filters import Filters
from twistedock.routers.volume import IVolumeBackend

from .fake_runtime import World, failure_of
from .memory import API, result_of

ANONYMOUS = "com.docker.volume.anonymous"


@pytest.mark.route("POST", "/volumes/create")
def test_create_named_anonymous_and_again():
    api = API()
    answer = api.request("POST", "/v1.41/volumes/create", json_body={"Name": "data", "Labels": {"a": "b"}})
    assert answer.code == 201
    assert answer.json()["Name"] == "data" and answer.json()["Labels"] == {"a": "b"}
    # The same name with other options: the volume that is there.
    again = api.request("POST", "/v1.41/volumes/create",
                        json_body={"Name": "data", "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}})
    assert (again.code, again.json()) == (201, answer.json())
    anonymous = api.request("POST", "/v1.41/volumes/create", json_body={}).json()
    assert len(anonymous["Name"]) == 64 and anonymous["Labels"] == {ANONYMOUS: ""}


@pytest.mark.parametrize("body, status, message", [
    ({"Name": "x2", "Driver": "foo"}, 404, 'create x2: error looking up volume plugin foo: plugin "foo" not found'),
    ({"Name": "x3", "DriverOpts": {"foo": "bar"}}, 400, 'create x3: invalid option: "foo"'),
    ({"Name": "x4", "DriverOpts": {"o": "size=1m", "type": "tmpfs"}}, 400, 'create x4: missing required option: "device"'),
    ({"Name": "a"}, 400, "create a: volume name is too short, names should be at least two alphanumeric characters"),
    ({"Name": "bad/name"}, 400, 'create bad/name: "bad/name" includes invalid characters for a local volume name, '
     'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'),
    ({"Name": 3}, 400, "invalid JSON: json: cannot unmarshal number into Go struct field "
     "CreateOptions.Name of type string"),
])
def test_create_refused_as_dockerd(body, status, message):
    answer = API().request("POST", "/v1.41/volumes/create", json_body=body)
    assert (answer.code, answer.json()) == (status, {"message": message})


@pytest.mark.route("GET", "/volumes/{name:.*}")
def test_get_unknown_volume():
    answer = API().request("GET", "/v1.41/volumes/nope")
    assert (answer.code, answer.json()) == (404, {"message": "get nope: no such volume"})


@pytest.mark.route("GET", "/volumes")
def test_list_with_filters_and_warnings():
    api = API()
    for name, labels in (("one", {"a": "1"}), ("two", None)):
        api.request("POST", "/volumes/create", json_body={"Name": name, "Labels": labels})
    api.volumes.in_use["one"] = ["c1"]
    listed = api.request("GET", "/v1.41/volumes").json()
    assert sorted(v["Name"] for v in listed["Volumes"]) == ["one", "two"] and listed["Warnings"] is None
    label = json.dumps({"label": {"a=1": True}})
    assert [v["Name"] for v in api.request("GET", "/volumes?filters=" + label).json()["Volumes"]] == ["one"]
    dangling = json.dumps({"dangling": {"true": True}})
    assert [v["Name"] for v in api.request("GET", "/volumes?filters=" + dangling).json()["Volumes"]] == ["two"]
    answer = api.request("GET", "/volumes?filters=" + json.dumps({"foo": {"x": True}}))
    assert (answer.code, answer.json()) == (400, {"message": "Invalid filter 'foo'"})


@pytest.mark.route("DELETE", "/volumes/{name:.*}")
def test_remove_in_use_unknown_and_forced():
    api = API()
    api.request("POST", "/volumes/create", json_body={"Name": "used"})
    api.volumes.in_use["used"] = ["abc"]
    for query in ("", "?force=1"):
        answer = api.request("DELETE", "/v1.41/volumes/used" + query)
        assert (answer.code, answer.json()) == (409, {"message": "remove used: volume is in use - [abc]"})
    answer = api.request("DELETE", "/v1.41/volumes/nope")
    assert (answer.code, answer.json()) == (404, {"message": "get nope: no such volume"})
    assert api.request("DELETE", "/v1.41/volumes/nope?force=true").code == 204
    api.volumes.in_use.clear()
    assert api.request("DELETE", "/v1.41/volumes/used").code == 204


@pytest.mark.route("PUT", "/volumes/{name:.*}")
def test_update_is_for_cluster_volumes():
    api = API()
    api.request("POST", "/volumes/create", json_body={"Name": "local1"})
    answer = api.request("PUT", "/v1.43/volumes/local1?version=1", json_body={})
    assert (answer.code, answer.json()) == (
        503, {"message": "volume update only valid for cluster volumes, but swarm is unavailable"})
    assert api.request("PUT", "/v1.41/volumes/local1").code == 400  # the route is 1.42's


@pytest.mark.route("POST", "/volumes/prune")
def test_prune_anonymous_only_at_new_api_all_before():
    api = API()
    api.request("POST", "/volumes/create", json_body={"Name": "named"})
    anonymous = api.request("POST", "/volumes/create", json_body={}).json()["Name"]
    pruned = api.request("POST", "/v1.43/volumes/prune").json()
    assert pruned == {"VolumesDeleted": [anonymous], "SpaceReclaimed": 0}
    assert api.request("POST", "/v1.43/volumes/prune").json()["VolumesDeleted"] == []
    everything = json.dumps({"all": {"true": True}})
    api.request("POST", "/volumes/create", json_body={"Name": "named2"})
    assert api.request("POST", "/v1.43/volumes/prune?filters=" + everything).json()["VolumesDeleted"] == [
        "named", "named2"]
    api.request("POST", "/volumes/create", json_body={"Name": "old"})
    assert api.request("POST", "/v1.41/volumes/prune").json()["VolumesDeleted"] == ["old"]


# -- the local driver's store ----------------------------------------------------


def store_in(tmp_path) -> VolumeStore:
    clock = Clock()
    store = VolumeStore(clock, str(tmp_path), EventLog(now=lambda: 0))
    store.thread = lambda f, *args: maybeDeferred(f, *args)
    return store


def run(coroutine):
    return result_of(ensureDeferred(coroutine))


def test_store_provides_the_interface(tmp_path):
    assert verifyObject(IVolumeBackend, store_in(tmp_path))


def test_store_lays_volumes_out_as_dockerd_and_reloads_them(tmp_path):
    store = store_in(tmp_path)
    doc = run(store.create("web", "local", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, {"x": "y"}))
    root = tmp_path / "volumes" / "web"
    assert doc["Mountpoint"] == str(root / "_data") and os.path.isdir(root / "_data")
    assert json.loads((root / "opts.json").read_text()) == {
        "MountType": "tmpfs", "MountOpts": "size=1m", "MountDevice": "tmpfs", "Quota": {"Size": 0}}
    run(store.create("", "", None, None))
    again = store_in(tmp_path)
    run(again.load())
    assert run(again.get("web")) == doc
    assert {v.name for v in load_all(str(tmp_path / "volumes"))} == set(again.volumes)
    # A volume whose metadata was never written (a crash) is still found.
    os.unlink(root / "metadata.json")
    found = {v.name: v for v in load_all(str(tmp_path / "volumes"))}
    assert found["web"].options == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}


def test_store_references_remove_and_prune(tmp_path):
    store = store_in(tmp_path)
    run(store.create_volume("kept", "", ref="c1"))
    anonymous = run(store.create_volume("", "", ref="c1"))
    with pytest.raises(Conflict) as e:
        run(store.remove("kept"))
    assert e.value.message == "remove kept: volume is in use - [c1]"
    assert run(store.prune(Filters())) == {"VolumesDeleted": [], "SpaceReclaimed": 0}
    store.release("kept", "c1")
    store.release(anonymous.name, "c1")
    with open(os.path.join(anonymous.path, "f"), "w") as f:
        f.write("12345")
    assert run(store.prune(Filters())) == {"VolumesDeleted": [anonymous.name], "SpaceReclaimed": 5}
    assert run(store.disk_usage({"volume"}))["Volumes"][0]["UsageData"] == {"RefCount": 0, "Size": 0}
    with pytest.raises(InvalidParameter):
        run(store.prune(Filters({"all": {"maybe"}})))
    assert run(store.prune(Filters({"all": {"1"}})))["VolumesDeleted"] == ["kept"]
    with pytest.raises(NotFound):
        run(store.remove("kept"))
    run(store.remove("kept", force=True))
    assert not os.listdir(tmp_path / "volumes")


def test_subpath_checks_as_dockerd():
    def refused(mount):
        with pytest.raises(InvalidParameter) as e:
            validate_mount(mount, stat_error=None)
        return e.value.message

    base = {"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "sub"}}
    assert refused(base) == 'invalid mount config for type "volume": must not set Subpath when using anonymous volumes'
    escape = dict(base, Source="v", VolumeOptions={"Subpath": "../up"})
    assert refused(escape) == 'invalid mount config for type "volume": subpath must be a relative path within the volume'
    validate_mount(dict(base, Source="v"), stat_error=None)


# -- containers and their volumes, over the fake runtime ------------------------------


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    # The daemon gives the container backend its volume store at construction.
    w.volumes = VolumeStore(w.clock, os.path.join(w.root, "data"), w.events)
    w.backend.volumes = w.volumes
    return w


def test_container_volumes_from_create_to_removal(world):
    ident = world.create("web", {"Binds": ["named:/data:nocopy"]}, Volumes={"/anon": {}})
    c = world.backend.get("web")
    anonymous = c.mount_points["/anon"]["Name"]
    assert set(world.volumes.volumes) == {"named", anonymous}
    assert world.volumes.references == {"named": {ident}, anonymous: {ident}}
    mounts = {m["Destination"]: m for m in run(world.backend.inspect("web", False, "1.41"))["Mounts"]}
    assert mounts["/data"]["Mode"] == "nocopy" and mounts["/anon"]["Mode"] == ""
    run(world.backend.start(ident))
    with open(os.path.join(world.backend.bundle(c), "config.json")) as f:
        spec_mounts = {m["destination"]: m for m in json.load(f)["mounts"]}
    assert spec_mounts["/data"]["source"] == world.volumes.volumes["named"].path
    assert spec_mounts["/anon"]["source"] == world.volumes.volumes[anonymous].path
    assert spec_mounts["/anon"]["options"] == ["rbind"]
    actions = [e.action for e in world.events._history if e.type == "volume"]
    assert actions == ["create", "create", "mount", "mount"]
    # The record keeps the mount points: a restarted daemon references them again.
    with open(c.record_path) as f:
        assert set(json.load(f)["MountPoints"]) == {"/data", "/anon"}
    world.runtime.exit(ident, 0)
    world.settle()
    run(world.backend.remove("web", force=False, volumes=True))
    assert set(world.volumes.volumes) == {"named"} and world.volumes.references == {}


def test_volumes_from_and_errors(world):
    world.create("src", Volumes={"/shared": {}})
    shared = world.backend.get("src").mount_points["/shared"]["Name"]
    ident = world.create("dst", {"VolumesFrom": ["src:ro"]})
    point = world.backend.get("dst").mount_points["/shared"]
    assert (point["Name"], point["RW"]) == (shared, False)
    assert world.volumes.references[shared] == {world.backend.get("src").id, ident}
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"VolumesFrom": ["src:rx"]}, None, "1.41"))
    assert isinstance(error, InvalidParameter) and str(error) == "invalid mode for volumes-from: rx"
    error = failure_of(world.backend.create("", {"Image": "busybox"}, {"VolumesFrom": ["nope"]}, None, "1.41"))
    assert isinstance(error, NotFound) and str(error) == "No such container: nope"
    # rm -v of one leaves the anonymous volume the other uses.
    run(world.backend.remove("dst", force=False, volumes=True))
    assert shared in world.volumes.volumes
    run(world.backend.remove("src", force=False, volumes=True))
    assert shared not in world.volumes.volumes
