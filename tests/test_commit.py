"""docker commit (twistedock.backend.commit): the config merge, and a
commit over fake containers into a real image store."""


import io
import os

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from twistedock.backend.spec.config import merge
from twistedock.backend.copies import CopyBackend
from twistedock.errors import InvalidParameter, NotFound
from twistedock.routers.container import CreateImageConfig, ICopyBackend

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="device nodes, owners and trusted xattrs need root")

MTIME_NS = 1_700_000_000_500_000_000


from .test_copies import FakeContainer, FakeContainers, tar_bytes

def test_commit_config_merge():
    container = {
        "User": "app",
        "Env": ["PATH=/bin", "A=0"],
        "Cmd": ["sh"],
        "Entrypoint": None,
        "Labels": {"l": "1"},
        "WorkingDir": "/w",
        "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/v": {}},
        "StopSignal": "SIGINT",
    }
    merged = merge({"Env": ["A=1"], "Cmd": ["echo", "hi"], "Labels": {"x": "y"}}, container)
    assert merged["Env"] == ["A=1", "PATH=/bin"]
    assert merged["Cmd"] == ["echo", "hi"]
    assert merged["Labels"] == {"x": "y", "l": "1"}
    assert (merged["User"], merged["WorkingDir"], merged["StopSignal"]) == ("app", "/w", "SIGINT")
    assert merged["ExposedPorts"] == {"80/tcp": {}}
    assert merge({}, container)["Cmd"] == ["sh"]
    # moby's merge: a command of the commit's own keeps the container's
    # entrypoint, which only an entrypoint of its own replaces.
    container["Entrypoint"] = ["/init"]
    assert merge({"Cmd": ["x"]}, container)["Entrypoint"] == ["/init"]
    assert merge({"Entrypoint": ["/e"]}, container).get("Cmd") is None


@pytest_twisted.ensureDeferred
async def test_backend_commit_makes_a_child_image(tmp_path, monkeypatch):
    from twisted.internet import reactor

    from twistedock.backend.events import EventLog
    from twistedock.backend.images import ImageStore

    store = ImageStore(reactor, str(tmp_path / "data"), EventLog())
    await store.load()
    parent = await store.import_image(
        io.BytesIO(tar_bytes([("bin", "d"), ("bin/sh", "f", b"#!")])), "-", "base", "", "", (), ""
    )
    c = FakeContainer(tmp_path / "c", parent)
    for sub in ("diff", "merged", "work"):
        (c.base / sub).mkdir(parents=True)
    (c.base / "diff" / "new").write_text("new\n")
    containers = FakeContainers(c, store)
    backend = CopyBackend(reactor, containers, store)
    verifyObject(ICopyBackend, backend)

    with pytest.raises(InvalidParameter) as e:
        await backend.commit("fake", CreateImageConfig(changes=["BOGUS x"]))
    assert str(e.value) == "bogus is not a valid change command"
    with pytest.raises(NotFound):
        await backend.commit("nope", CreateImageConfig())
    with pytest.raises(InvalidParameter):
        await backend.commit("", CreateImageConfig())

    image_id = await backend.commit(
        "fake",
        CreateImageConfig(
            repo="child", tag="v1", comment="hello", author="me",
            changes=['CMD ["echo","committed"]', "ENV A=1"], pause=True,
        ),
    )
    assert containers.calls == ["pause", "unpause"]
    image = store.get("child:v1")
    assert image.id == image_id
    assert image.parent == parent
    assert len(image.diff_ids) == 2
    config = image.config
    assert config["config"]["Cmd"] == ["echo", "committed"]
    assert config["config"]["Env"] == ["PATH=/bin", "A=1"]
    assert config["config"]["Hostname"] == "h"
    assert (config["container"], config["author"], config["comment"]) == (c.id, "me", "hello")
    assert config["history"][-1]["created_by"] == "sh -c work"
    assert open(os.path.join(image.layer_dirs[-1], "new")).read() == "new\n"
    assert containers.events[-1] == (
        "commit", {"comment": "hello", "imageID": image_id, "imageRef": "child:v1"}
    )
    # Nothing changed: no layer, an empty_layer history entry.
    os.unlink(str(c.base / "diff" / "new"))
    again = await backend.commit("fake", CreateImageConfig(pause=False))
    assert containers.calls == ["pause", "unpause"]
    assert store.get(again).diff_ids == store.get(parent).diff_ids
    assert store.get(again).config["history"][-1]["empty_layer"] is True


@pytest_twisted.ensureDeferred
async def test_commit_of_a_container_that_just_exited_ignores_the_failed_pause(tmp_path):
    """docker-py's commit (pause=1) of a container whose process just ended
    (its exit not yet handled): runc's pause fails; dockerd commits anyway."""
    from twisted.internet import reactor

    from twistedock.backend.events import EventLog
    from twistedock.backend.images import ImageStore
    from twistedock.errors import Conflict

    store = ImageStore(reactor, str(tmp_path / "data"), EventLog())
    await store.load()
    parent = await store.import_image(io.BytesIO(tar_bytes([("bin", "d")])), "-", "base", "", "", (), "")
    c = FakeContainer(tmp_path / "c", parent)
    for sub in ("diff", "merged", "work"):
        (c.base / sub).mkdir(parents=True)
    (c.base / "diff" / "test").write_text("")

    class ExitedContainers(FakeContainers):
        async def pause(self, ref):
            self.calls.append("pause")
            raise Conflict("Cannot pause container %s: container not running" % (c.id,))

    containers = ExitedContainers(c)
    image_id = await CopyBackend(reactor, containers, store).commit("fake", CreateImageConfig(repo="done", pause=True))
    assert containers.calls == ["pause"]
    assert store.get("done:latest").id == image_id
    assert open(os.path.join(store.get(image_id).layer_dirs[-1], "test")).read() == ""


@pytest_twisted.ensureDeferred
async def test_commit_body_strslices_and_its_host_config(tmp_path):
    """A commit body is a create's: a StrSlice given as one string is a list
    of it in the image (dockerd 20.10, side by side), and a HostConfig is
    checked by the decoder's rules, before the container is looked up."""
    from twisted.internet import reactor

    from twistedock.backend.events import EventLog
    from twistedock.backend.images import ImageStore

    store = ImageStore(reactor, str(tmp_path / "data"), EventLog())
    await store.load()
    parent = await store.import_image(
        io.BytesIO(tar_bytes([("bin", "d"), ("bin/sh", "f", b"#!")])), "-", "base", "", "", (), ""
    )
    c = FakeContainer(tmp_path / "c", parent)
    for sub in ("diff", "merged", "work"):
        (c.base / sub).mkdir(parents=True)
    backend = CopyBackend(reactor, FakeContainers(c, store), store)
    image_id = await backend.commit("fake", CreateImageConfig(
        pause=False, config={"Entrypoint": "sh", "Cmd": "x y", "Shell": "bash"},
    ))
    config = store.get(image_id).config["config"]
    assert (config["Entrypoint"], config["Cmd"], config["Shell"]) == (["sh"], ["x y"], ["bash"])
    with pytest.raises(InvalidParameter) as e:
        await backend.commit("nope", CreateImageConfig(config={"HostConfig": {"Isolation": "bad"}}))
    assert str(e.value) == "Invalid isolation: \"bad\" - linux only supports 'default'"
    # Without a HostConfig the decoder checks nothing.
    await backend.commit("fake", CreateImageConfig(pause=False, config={"MacAddress": "x", "HostConfig": None}))
