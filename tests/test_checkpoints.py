"""
The checkpoint router and backend in process: the create body decoded as Go
decodes it, the routes composed with an in-memory backend, the backend's
runc invocations and bookkeeping with a fake runtime, CRIU found and
checked with stand-in binaries, and the container backend's restore and
"checkpointed" exit paths.
"""

import json
import os
import stat

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twistedock.backend import checkpoints as checkpoints_module
from twistedock.backend.checkpoints import (
    METADATA,
    RUNC_OPTIONS,
    CheckpointBackend,
    CheckpointStore,
    RestorePlan,
    checkpoint_dir,
    criu_log_errors,
)
from twistedock.backend.containers import Container, ContainerBackend, ContainerStore, State
from twistedock.backend.containers import Run as _Run
from twistedock.backend.runtime.criu import Criu, CriuStatus, find_criu
from twistedock.backend.runtime.rootfs import OverlayMounts
from twistedock.backend.events import EventLog
from twistedock.errors import DockerError, InternalError, InvalidParameter, NotFound
from twistedock.routers.checkpoint import ICheckpointBackend, decode_create_options
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose

from .memory import API, MemoryContainerBackend, result_of

NAME_RULE = "[a-zA-Z0-9][a-zA-Z0-9_.-]"


# -- the create body ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "EOF"),
        (b"   \n", "EOF"),
        (b"{", "unexpected EOF"),
        (b'{"CheckpointID":"ok7", "Exit":false', "unexpected EOF"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b'{"CheckpointID":"ok8" "Exit":false}', "invalid character '\"' after object key:value pair"),
        (b"[]", "json: cannot unmarshal array into Go value of type types.CheckpointCreateOptions"),
        (b'"str"', "json: cannot unmarshal string into Go value of type types.CheckpointCreateOptions"),
        (b"12", "json: cannot unmarshal number into Go value of type types.CheckpointCreateOptions"),
        (b"true", "json: cannot unmarshal bool into Go value of type types.CheckpointCreateOptions"),
        (
            b'{"CheckpointID":5}',
            "json: cannot unmarshal number into Go struct field CheckpointCreateOptions.CheckpointID of type string",
        ),
        (
            b'{"CheckpointID":"a","Exit":"yes"}',
            "json: cannot unmarshal string into Go struct field CheckpointCreateOptions.Exit of type bool",
        ),
        (
            b'{"CheckpointID":"a","Exit":0}',
            "json: cannot unmarshal number into Go struct field CheckpointCreateOptions.Exit of type bool",
        ),
    ],
)
def test_create_body_errors_are_go_json_decoder_messages(body, message):
    # What dockerd 20.10 answered for each (500).
    with pytest.raises(InternalError) as e:
        decode_create_options(body, "application/json")
    assert str(e.value) == message


def test_create_body_as_go_reads_it():
    assert decode_create_options(b"null") == {"CheckpointID": "", "CheckpointDir": "", "Exit": False}
    # Names match regardless of case, unknown fields and trailing data are ignored.
    assert decode_create_options(b'{"checkpointid":"low","exit":true,"Unknown":1} trailing') == {
        "CheckpointID": "low", "CheckpointDir": "", "Exit": True,
    }
    assert decode_create_options(b'{"CheckpointID":"a","Exit":null,"CheckpointDir":"/d"}') == {
        "CheckpointID": "a", "CheckpointDir": "/d", "Exit": False,
    }
    # A form-encoded body is eaten by Go's form parser before the decoder runs.
    with pytest.raises(InternalError, match="^EOF$"):
        decode_create_options(b'{"CheckpointID":"a"}', "application/x-www-form-urlencoded")


# -- the router ----------------------------------------------------------------------


@implementer(ICheckpointBackend)
class MemoryCheckpoints:
    def __init__(self):
        self.checkpoints = {}
        self.calls = []
        #: What create returns (twistedock's C{"Frozen"}).
        self.timing = None

    async def list(self, name, directory):
        self.calls.append(("list", name, directory))
        if name == "nope":
            raise NotFound("No such container: nope")
        found = sorted(self.checkpoints.get((name, directory), []))
        return [{"Name": n} for n in found] or None

    async def create(self, name, options):
        self.calls.append(("create", name, options))
        self.checkpoints.setdefault((name, options["CheckpointDir"]), []).append(options["CheckpointID"])
        return self.timing

    async def delete(self, name, checkpoint_id, directory):
        self.calls.append(("delete", name, checkpoint_id, directory))
        names = self.checkpoints.get((name, directory), [])
        if checkpoint_id not in names:
            raise InternalError("checkpoint %s does not exist for container %s" % (checkpoint_id, name))
        names.remove(checkpoint_id)

    async def export(self, name, checkpoint_id, prepare=False, wait=False):
        self.calls.append(("export", name, checkpoint_id) + (("prepare",) if prepare else ()))
        raise NotFound("checkpoint %s does not exist for container %s" % (checkpoint_id, name))

    async def page_server(self, name, checkpoint_id):
        self.calls.append(("pages", name, checkpoint_id))
        raise NotFound("checkpoint %s of container %s serves no pages" % (checkpoint_id, name))

    async def page_source(self, name, checkpoint_id):
        self.calls.append(("page-source", name, checkpoint_id))
        raise NotFound("checkpoint %s does not exist for container %s" % (checkpoint_id, name))

    async def import_checkpoint(self, content, name, api_version, prepare=False):
        self.calls.append(("import", name, content.read()) + (("prepare",) if prepare else ()))
        return {"Id": "f" * 64, "Checkpoint": "cp1"}

    async def import_into(self, name, content):
        self.calls.append(("import-into", name, content.read()))
        return {"Id": "f" * 64, "Checkpoint": "cp1"}


class RestoringContainers(MemoryContainerBackend):
    #: What a start from a checkpoint returns (twistedock's C{"Resumed"}).
    timing = None

    async def start(self, name, checkpoint="", checkpoint_dir=""):
        self.calls.append(("start", name, checkpoint, checkpoint_dir))
        await super().start(name)
        return self.timing if checkpoint else None


def checkpoint_api(experimental=True):
    api = API(experimental=experimental)
    backend = MemoryCheckpoints()
    containers = RestoringContainers()
    from twistedock.backend.swarm import InactiveCluster
    from twistedock.daemon import build_routers
    from treq.testing import StubTreq

    routers = build_routers(api.clock, api.system, InactiveCluster(), containers=containers, checkpoints=backend)
    api.resource = APIResource(compose(routers, APIConfig(experimental=experimental, debug=False)))
    api.treq = StubTreq(api.resource)
    api.containers = containers
    return api, backend


def test_memory_backend_provides_the_interface():
    assert verifyObject(ICheckpointBackend, MemoryCheckpoints())


@pytest.mark.route("GET", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
def test_routes_answer_as_dockerd():
    api, backend = checkpoint_api()
    answer = api.request("GET", "/v1.41/containers/web/checkpoints")
    assert (answer.code, answer.body) == (200, b"null\n")
    answer = api.request("POST", "/v1.41/containers/web/checkpoints", json_body={"CheckpointID": "cp1", "Exit": True})
    assert (answer.code, answer.body) == (201, b"")
    assert backend.calls[-1] == ("create", "web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": True})
    api.request("POST", "/v1.41/containers/web/checkpoints", json_body={"CheckpointID": "a0"})
    answer = api.request("GET", "/v1.41/containers/web/checkpoints")
    assert answer.json() == [{"Name": "a0"}, {"Name": "cp1"}]
    answer = api.request("GET", "/v1.41/containers/web/checkpoints?dir=/elsewhere")
    assert answer.json() is None and backend.calls[-1] == ("list", "web", "/elsewhere")
    answer = api.request("DELETE", "/v1.41/containers/web/checkpoints/cp1")
    assert (answer.code, answer.body) == (204, b"")
    answer = api.request("DELETE", "/v1.41/containers/web/checkpoints/cp1?dir=/d")
    assert answer.code == 500
    assert answer.json() == {"message": "checkpoint cp1 does not exist for container web"}
    assert backend.calls[-1] == ("delete", "web", "cp1", "/d")
    answer = api.request("GET", "/v1.41/containers/nope/checkpoints")
    assert (answer.code, answer.json()) == (404, {"message": "No such container: nope"})
    answer = api.request("POST", "/v1.41/containers/web/checkpoints", body=b"[]",
                         headers={"Content-Type": "application/json"})
    assert (answer.code, answer.json()) == (
        500, {"message": "json: cannot unmarshal array into Go value of type types.CheckpointCreateOptions"}
    )


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
def test_export_and_import_routes_are_ours():
    """Not taken by the container router's /containers/{name:.*}/export,
    nor by POST /containers/{name:.*}/checkpoints; experimental."""
    api, backend = checkpoint_api()
    answer = api.request("GET", "/v1.41/containers/web/checkpoints/cp1/export")
    assert (answer.code, answer.json()) == (404, {"message": "checkpoint cp1 does not exist for container web"})
    assert backend.calls[-1] == ("export", "web", "cp1")
    answer = api.request("POST", "/v1.41/containers/checkpoints/import?name=moved", body=b"TAR",
                         headers={"Content-Type": "application/x-tar"})
    assert (answer.code, answer.json()) == (201, {"Id": "f" * 64, "Checkpoint": "cp1"})
    assert backend.calls[-1] == ("import", "moved", b"TAR")
    api, backend = checkpoint_api(experimental=False)
    answer = api.request("POST", "/v1.41/containers/checkpoints/import", body=b"TAR")
    assert answer.code == 501 and not backend.calls


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
@pytest.mark.route("POST", "/containers/checkpoints/import")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/import")
def test_prepared_import_routes():
    """A migration's two halves: the record exported and imported with
    prepare=1 before the freeze, the checkpoint imported into the prepared
    container after it (not taken for a checkpoint named "import", nor by
    the container router); experimental."""
    api, backend = checkpoint_api()
    answer = api.request("GET", "/v1.41/containers/web/checkpoints/cp1/export?prepare=1")
    assert backend.calls[-1] == ("export", "web", "cp1", "prepare")
    answer = api.request("POST", "/v1.41/containers/checkpoints/import?name=moved&prepare=1", body=b"REC",
                         headers={"Content-Type": "application/x-tar"})
    assert (answer.code, answer.json()) == (201, {"Id": "f" * 64, "Checkpoint": "cp1"})
    assert backend.calls[-1] == ("import", "moved", b"REC", "prepare")
    answer = api.request("POST", "/v1.41/containers/moved/checkpoints/import", body=b"TAR",
                         headers={"Content-Type": "application/x-tar"})
    assert (answer.code, answer.json()) == (200, {"Id": "f" * 64, "Checkpoint": "cp1"})
    assert backend.calls[-1] == ("import-into", "moved", b"TAR")
    api, backend = checkpoint_api(experimental=False)
    answer = api.request("POST", "/v1.41/containers/moved/checkpoints/import", body=b"TAR")
    assert answer.code == 501 and not backend.calls


@pytest.mark.route("DELETE", "/containers/{name}/checkpoints/{checkpoint}")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/pages")
@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/page-source")
def test_routes_are_experimental():
    api, backend = checkpoint_api(experimental=False)
    for method, path in (
        ("GET", "/v1.41/containers/web/checkpoints"),
        ("POST", "/v1.41/containers/web/checkpoints"),
        ("DELETE", "/v1.41/containers/web/checkpoints/cp1"),
        ("POST", "/v1.41/containers/web/checkpoints/cp1/pages"),
        ("POST", "/v1.41/containers/web/checkpoints/cp1/page-source"),
    ):
        answer = api.request(method, path)
        assert answer.code == 501
        assert answer.json()["message"].startswith("This experimental feature is disabled by default")
    assert backend.calls == []


@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_start_with_a_checkpoint_goes_to_the_backend():
    api, backend = checkpoint_api()
    result_of(ensureDeferred(api.containers.create("web", {}, {}, {}, "1.41")))
    answer = api.request("POST", "/v1.41/containers/web/start?checkpoint=cp1&checkpoint-dir=/d")
    assert answer.code == 204
    assert api.containers.calls[-1] == ("start", "web", "cp1", "/d")
    api.containers.containers["web"]["Running"] = False
    api.request("POST", "/v1.41/containers/web/start")
    assert api.containers.calls[-1] == ("start", "web", "", "")


@pytest.mark.route("POST", "/containers/{name:.*}/checkpoints")
@pytest.mark.route("POST", "/containers/{name:.*}/start")
def test_answers_say_how_long_a_process_was_frozen_and_has_run_again():
    """twistedock's checkpoint answer says how long its process had been
    frozen, a restore's how long the restored process had run (a
    migration's downtime measured at both ends, no clock shared); nothing
    when the backend does not know (a dump or restore through runc)."""
    import time

    from twistedock.client import checkpoints as client_checkpoints
    from twistedock.routers import checkpoint as checkpoint_router
    from twistedock.routers import container as container_router

    assert client_checkpoints.FROZEN_HEADER == checkpoint_router.FROZEN_HEADER
    assert client_checkpoints.RESUMED_HEADER == container_router.RESUMED_HEADER
    api, backend = checkpoint_api()
    result_of(ensureDeferred(api.containers.create("web", {}, {}, {}, "1.41")))
    answer = api.request("POST", "/v1.41/containers/web/checkpoints", json_body={"CheckpointID": "cp1"})
    assert answer.code == 201 and answer.header("X-Twistedock-Frozen-For") is None
    backend.timing = {"Frozen": time.monotonic() - 0.25}
    answer = api.request("POST", "/v1.41/containers/web/checkpoints", json_body={"CheckpointID": "cp2"})
    assert answer.code == 201 and 0.25 <= float(answer.header("X-Twistedock-Frozen-For")) < 5
    api.containers.containers["web"]["Running"] = False
    api.containers.timing = {"Resumed": time.monotonic() - 0.5}
    answer = api.request("POST", "/v1.41/containers/web/start?checkpoint=cp2")
    assert answer.code == 204 and 0.5 <= float(answer.header("X-Twistedock-Running-For")) < 5
    api.containers.containers["web"]["Running"] = False
    answer = api.request("POST", "/v1.41/containers/web/start")
    assert answer.code == 204 and answer.header("X-Twistedock-Running-For") is None


def test_router_without_a_backend_says_so():
    api = API(experimental=True)
    answer = api.request("GET", "/v1.41/containers/web/checkpoints")
    assert answer.code == 501


# -- the backend, with a fake runtime --------------------------------------------------


class FakeExits:
    def __init__(self):
        self.waiting = {}

    def wait(self, container_id):
        d = Deferred()
        self.waiting.setdefault(container_id, []).append(d)
        return d

    def exit(self, container_id, code):
        for d in self.waiting.pop(container_id, []):
            if not d.called:
                d.callback(code)


class FakeRuntime:
    """runc as seen by the checkpoint backend: C{exec_runc} records its
    arguments and answers C{result} (a Deferred, to hold a call)."""

    def __init__(self):
        self.calls = []
        self.result = None
        self.pending = []

    def exec_runc(self, args):
        self.calls.append(list(args))
        images = args[args.index("--image-path") + 1]
        with open(os.path.join(images, "inventory.img"), "wb") as f:
            f.write(b"images")
        if self.result is None:
            d = Deferred()
            self.pending.append(d)
            return d
        return succeed(self.result)


class FakeContainers:
    """The parts of L{ContainerBackend} the checkpoint backend uses."""

    def __init__(self, root):
        self.root = root
        self.containers = {}
        self.names = {}
        self._runs = {}
        self._locks = {}
        self.exits = FakeExits()
        self.runtime = FakeRuntime()
        self.events = []
        self.finished = []
        #: (container ID, the failed call) of each reconcile_one.
        self.reconciled = []

    async def reconcile_one(self, c, after):
        self.reconciled.append((c.id, after))

    def add(self, name, running=True, tty=False):
        ident = (name * 64)[:64]
        directory = os.path.join(self.root, "containers", ident)
        os.makedirs(directory)
        c = Container(
            id=ident, name="/" + name, created=1, image_id="sha256:img", config={"Image": "busybox", "Tty": tty},
            host_config={}, path="sh", args=[], directory=directory,
            state=State(running=running, pid=42 if running else 0),
        )
        self.containers[ident] = c
        self.names[c.name] = ident
        if running:
            self._runs[ident] = _Run()
        return c

    def get(self, ref):
        name = "/" + ref.lstrip("/")
        if name in self.names:
            return self.containers[self.names[name]]
        raise NotFound("No such container: %s" % (ref,))

    def lock(self, c):
        return self._locks.setdefault(c.id, DeferredLock())

    def by_id(self, container_id):
        return self.containers.get(container_id)

    def mark_checkpointed(self, c, checkpointed):
        if c.id in self._runs:
            self._runs[c.id].checkpointed = checkpointed

    def wait_exit_code(self, c):
        return self.exits.wait(c.id)

    async def save(self, c):
        c.save()

    def run_in_thread(self, function, *args):
        return succeed(function(*args))

    def now(self):
        return 1_700_000_000_000_000_000

    def log_event(self, c, action, **extra):
        self.events.append((c.name, action))

    def bundle(self, c):
        return os.path.join(self.root, "exec", c.id)

    def overlay(self, c):
        return {"MergedDir": os.path.join(self.root, "merged", c.id),
                "UpperDir": os.path.join(self.root, "upper", c.id)}

    async def finish_run(self, c, code):
        self.finished.append((c.name, code, self._runs[c.id].checkpointed))
        self._runs.pop(c.id, None)
        c.state.running = False
        c.state.exit_code = code


class FakeCriu:
    def __init__(self, works=True):
        self.works = works
        self.checked = CriuStatus("/opt/criu", "4.1.1", works, "" if works else "/opt/criu failed \"criu check\": no")

    async def require(self, what):
        if not self.works:
            raise InternalError("%s needs CRIU: %s" % (what, self.checked.problem))
        return "/opt/criu"


@pytest.fixture
def fake(tmp_path):
    from twisted.internet.task import Clock

    containers = FakeContainers(str(tmp_path))
    os.makedirs(os.path.join(str(tmp_path), "exec"))
    clock = Clock()
    store = CheckpointStore(FakeCriu(), containers.run_in_thread)
    backend = CheckpointBackend(clock, containers, store, containers.runtime, images=None)
    backend.clock = clock
    return backend, containers


def test_backend_provides_the_interface(fake):
    assert verifyObject(ICheckpointBackend, fake[0])


def failure_of(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    from twisted.python.failure import Failure

    assert isinstance(results[0], Failure), results[0]
    return results[0].value


def test_checkpoint_that_stops_the_container(fake):
    backend, containers = fake
    c = containers.add("web")
    containers.runtime.result = (b"", b"", 0)
    d = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": True}))
    # Dumped under a temporary name, renamed once complete.
    directory = os.path.join(c.directory, "checkpoints", ".tmp-cp1")
    work = os.path.join(containers.bundle(c), "checkpoint-work")
    assert containers.runtime.calls == [
        ["--criu", "/opt/criu", "checkpoint", "--image-path", directory, "--work-path", work]
        + list(RUNC_OPTIONS) + [c.id]
    ]
    # Not answered before the exit the checkpoint caused is recorded...
    assert not d.called
    assert c.manually_stopped and containers._runs[c.id].checkpointed
    containers.exits.exit(c.id, 137)
    result_of(d)
    # ...as a checkpoint's exit, not a crash; then the event.
    assert containers.finished == [("/web", 137, True)]
    assert not c.state.running and c.state.exit_code == 137
    assert containers.events == [("/web", "checkpoint")]
    assert not os.path.exists(directory)
    with open(os.path.join(os.path.dirname(directory), "cp1", METADATA)) as f:
        metadata = json.load(f)
    assert metadata["Name"] == "cp1" and metadata["Exit"] is True and metadata["Terminal"] is False
    assert metadata["Container"] == {"ID": c.id, "Name": "/web", "Image": "busybox", "ImageID": "sha256:img"}
    assert metadata["RuncOptions"] == list(RUNC_OPTIONS)
    assert metadata["CRIU"] == {"Path": "/opt/criu", "Version": "4.1.1", "RPC": False}
    assert not os.path.exists(work)
    assert result_of(ensureDeferred(backend.list("web", ""))) == [{"Name": "cp1"}]
    # Marked until the next start: no restart policy revives it, even at boot.
    assert os.path.exists(c.path_of("checkpointed"))


@pytest.mark.route("GET", "/containers/{name}/checkpoints/{checkpoint}/export")
def test_an_export_asked_with_the_checkpoint_answers_once_it_is_published(fake):
    """A migration asks for the checkpoint and its export at once: the
    export (wait) is answered when the dump is complete and published,
    before the container's exit is recorded and the checkpoint answered."""
    backend, containers = fake
    c = containers.add("web")
    exported = ensureDeferred(backend.export("web", "cp1", wait=True))
    created = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": True}))
    assert not exported.called
    containers.runtime.pending.pop().callback((b"", b"", 0))
    stream = result_of(exported)
    assert os.path.exists(os.path.join(c.directory, "checkpoints", "cp1", METADATA))
    stream.close()
    assert not created.called
    containers.exits.exit(c.id, 137)
    result_of(created)
    assert backend.publishing == {}


def test_an_export_waiting_for_a_failed_checkpoint_is_not_found(fake):
    backend, containers = fake
    containers.add("web")
    exported = ensureDeferred(backend.export("web", "cp1", wait=True))
    created = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": True}))
    containers.runtime.pending.pop().callback((b"", b"criu failed", 1))
    assert isinstance(failure_of(created), InternalError)
    assert isinstance(failure_of(exported), NotFound)
    assert backend.publishing == {}


def test_an_export_waiting_for_a_refused_checkpoint_is_not_found_at_once(fake):
    """Refused before it began (here: a lazy checkpoint that would not stop
    the container), the checkpoint's waiting export answers at once."""
    backend, containers = fake
    containers.add("web")
    exported = ensureDeferred(backend.export("web", "cp1", wait=True))
    created = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "CheckpointDir": "", "LazyPages": True}))
    assert isinstance(failure_of(created), DockerError)
    assert isinstance(failure_of(exported), NotFound)
    assert backend.publishing == {}


def test_an_export_waits_for_a_checkpoint_that_never_comes_at_most_a_while(fake):
    backend, containers = fake
    containers.add("web")
    exported = ensureDeferred(backend.export("web", "cp1", wait=True))
    backend.clock.advance(checkpoints_module.PUBLISH_WAIT)
    assert isinstance(failure_of(exported), NotFound)
    # Without wait: at once.
    assert isinstance(failure_of(ensureDeferred(backend.export("web", "cp2"))), NotFound)


@pytest.mark.route("POST", "/containers/{name}/checkpoints/{checkpoint}/page-source")
def test_a_page_source_may_come_before_the_checkpoint_of_a_prepared_import(fake):
    """A migration joins the target's page source before the freeze: for a
    container a prepared import made, the checkpoint may be still to come
    (its restore checks that its pages were left behind); for any other
    container it must be there."""
    from twistedock.backend.containers.defaults import IMPORT_PENDING_MARK

    backend, containers = fake
    c = containers.add("web", running=False)
    assert isinstance(failure_of(ensureDeferred(backend.page_source("web", "cp1"))), NotFound)
    with open(c.path_of(IMPORT_PENDING_MARK), "w"):
        pass
    assert callable(result_of(ensureDeferred(backend.page_source("web", "cp1"))))
    assert isinstance(failure_of(ensureDeferred(backend.page_source("web", "../cp1"))), NotFound)


def test_checkpoint_leaving_it_running(fake):
    backend, containers = fake
    c = containers.add("web")
    containers.runtime.result = (b"", b"", 0)
    result_of(ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "CheckpointDir": "", "Exit": False})))
    assert "--leave-running" in containers.runtime.calls[0]
    assert c.state.running and not c.manually_stopped and not containers._runs[c.id].checkpointed
    assert containers.finished == [] and containers.events == [("/web", "checkpoint")]
    assert not os.path.exists(c.path_of("checkpointed"))


def test_checkpoint_that_fails_leaves_nothing(fake):
    backend, containers = fake
    c = containers.add("web")
    containers.runtime.result = (b"", b'time="x" level=error msg="criu failed: type NOTIFY errno 0"\n', 1)
    work = os.path.join(containers.bundle(c), "checkpoint-work")
    real_fresh = checkpoints_module._fresh_dir

    def fresh(path):
        real_fresh(path)
        with open(os.path.join(path, "dump.log"), "w") as f:
            f.write("(00.01) Warn (a.c:1): fine\n(00.02) Error (criu/sk-unix.c:12): unix: Can't dump socket\n")

    checkpoints_module._fresh_dir = fresh
    try:
        error = failure_of(ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "Exit": True})))
    finally:
        checkpoints_module._fresh_dir = real_fresh
    assert error.status == 500
    assert str(error) == (
        "Cannot checkpoint container web: criu failed: type NOTIFY errno 0: "
        "Error (criu/sk-unix.c:12): unix: Can't dump socket"
    )
    assert not os.path.exists(os.path.join(c.directory, "checkpoints", "cp1"))
    assert os.path.exists(os.path.join(work, "dump.log"))  # kept to look at
    assert c.state.running and not c.manually_stopped and not containers._runs[c.id].checkpointed
    assert containers.exits.waiting.get(c.id, []) == [] or all(d.called for d in containers.exits.waiting[c.id])
    assert containers.events == []
    # The container's record and runc's view of it made to agree.
    assert containers.reconciled == [(c.id, "checkpoint")]


def test_refusals(fake):
    backend, containers = fake
    containers.add("web")
    containers.add("off", running=False)
    containers.runtime.result = (b"", b"", 0)

    def refused(name, options):
        return str(failure_of(ensureDeferred(backend.create(name, options))))

    assert refused("nope", {"CheckpointID": "cp1"}) == "No such container: nope"
    assert refused("off", {"CheckpointID": "cp1"}) == "Container off not running"
    for bad in ("", "a", "-a", "a/b", ".."):
        assert refused("web", {"CheckpointID": bad}) == (
            "Invalid checkpoint ID (%s), only %s are allowed" % (bad, NAME_RULE)
        )
    result_of(ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "Exit": False})))
    assert refused("web", {"CheckpointID": "cp1"}) == (
        "cannot checkpoint container web: checkpoint with name cp1 already exists for container web"
    )
    assert containers.runtime.calls and len(containers.runtime.calls) == 1


def test_without_criu_the_error_names_what_is_missing(fake):
    backend, containers = fake
    c = containers.add("web")
    backend.store.criu = FakeCriu(works=False)
    error = failure_of(ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "Exit": True})))
    assert (error.status, str(error)) == (
        500, 'Cannot checkpoint container web: checkpoint needs CRIU: /opt/criu failed "criu check": no'
    )
    assert containers.runtime.calls == []
    assert not os.path.exists(os.path.join(c.directory, "checkpoints", "cp1"))
    # Listing and removing need no CRIU.
    assert result_of(ensureDeferred(backend.list("web", ""))) is None


def test_one_operation_at_a_time(fake):
    backend, containers = fake
    c = containers.add("web")
    first = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "Exit": True}))
    second = ensureDeferred(backend.create("web", {"CheckpointID": "cp2", "Exit": True}))
    assert len(containers.runtime.calls) == 1 and backend.in_progress == 1
    containers.runtime.pending.pop().callback((b"", b"", 0))
    containers.exits.exit(c.id, 137)
    result_of(first)
    # The second ran once the first was over: the container had stopped.
    assert str(failure_of(second)) == "Container web not running"
    assert len(containers.runtime.calls) == 1 and backend.in_progress == 0


def test_list_and_delete(fake, tmp_path):
    backend, containers = fake
    c = containers.add("web")
    base = os.path.join(c.directory, "checkpoints")
    for name in ("b", "a", "c", ".tmp-d"):
        os.makedirs(os.path.join(base, name))
        with open(os.path.join(base, name, METADATA), "w") as f:
            f.write("{}")
    # A dump never completed: no metadata, or still under its temporary
    # name; neither is listed.
    os.makedirs(os.path.join(base, "half"))
    with open(os.path.join(base, "not-a-dir"), "w"):
        pass
    assert result_of(ensureDeferred(backend.list("web", ""))) == [{"Name": "a"}, {"Name": "b"}, {"Name": "c"}]
    result_of(ensureDeferred(backend.delete("web", "b", "")))
    assert sorted(os.listdir(base)) == [".tmp-d", "a", "c", "half", "not-a-dir"]
    assert str(failure_of(ensureDeferred(backend.delete("web", "b", "")))) == (
        "checkpoint b does not exist for container web"
    )
    nowhere = str(tmp_path / "nowhere")
    assert str(failure_of(ensureDeferred(backend.list("web", nowhere)))) == (
        "checkpoint  does not exist for container web"
    )
    assert str(failure_of(ensureDeferred(backend.list("web", os.path.join(base, "not-a-dir"))))) == (
        "%s exists and is not a directory" % os.path.join(base, "not-a-dir")
    )
    other = tmp_path / "other"
    (other / "x1").mkdir(parents=True)
    assert result_of(ensureDeferred(backend.list("web", str(other)))) == [{"Name": "x1"}]
    result_of(ensureDeferred(backend.delete("web", "x1", str(other))))
    assert os.listdir(str(other)) == []


def test_checkpoint_dir_rules(tmp_path):
    base = str(tmp_path)
    made = checkpoint_dir("", "cp1", "web", base, create=True)
    assert made == os.path.join(base, "cp1") and os.path.isdir(made)
    with pytest.raises(InternalError, match="^checkpoint with name cp1 already exists for container web$"):
        checkpoint_dir("", "cp1", "web", base, create=True)
    with open(os.path.join(base, "file"), "w"):
        pass
    with pytest.raises(InternalError, match="exists and is not a directory$"):
        checkpoint_dir("", "file", "web", base, create=True)
    assert checkpoint_dir(base, "cp1", "web", "/elsewhere", create=False) == made
    with pytest.raises(InternalError, match="^checkpoint zz does not exist for container /web$"):
        checkpoint_dir("", "zz", "/web", base, create=False)


def test_restore_plan(fake):
    backend, containers = fake
    c = containers.add("web", running=False)
    error = failure_of(ensureDeferred(backend.store.restore_plan(c, "cp1", "")))
    assert (error.status, str(error)) == (500, "checkpoint cp1 does not exist for container /web")
    directory = os.path.join(c.directory, "checkpoints", "cp1")
    os.makedirs(directory)
    plan = result_of(ensureDeferred(backend.store.restore_plan(c, "cp1", "")))
    assert plan.create_arguments() == {
        "restore_from": directory,
        "restore_options": list(RUNC_OPTIONS),
        "runtime_args": ["--criu=/opt/criu"],
    }
    # The options it was taken with are the ones it is restored with.
    with open(os.path.join(directory, METADATA), "w") as f:
        json.dump({"RuncOptions": ["--file-locks", "--bogus"]}, f)
    plan = result_of(ensureDeferred(backend.store.restore_plan(c, "cp1", "")))
    assert plan.options == ["--file-locks"]
    backend.store.criu = FakeCriu(works=False)
    error = failure_of(ensureDeferred(backend.store.restore_plan(c, "cp1", "")))
    assert str(error) == 'Cannot restore container web: restore needs CRIU: /opt/criu failed "criu check": no'


def test_restore_failure_says_what_criu_said(tmp_path):
    bundle = str(tmp_path)
    with open(os.path.join(bundle, "restore.log"), "w") as f:
        f.write(
            "(00.052324) Warn (criu/util.c:1533): rlimit: fine\n"
            "(00.1)      1: Error (criu/files-reg.c:1): File bin/x has bad size 1 (expect 2)\n"
            "(00.2)      1: Error (criu/cr-restore.c:2320): Restoring FAILED.\n"
            "(00.3) Error (criu/cgroup.c:1998): cg: cgroupd: recv req error\n"
        )
    plan = RestorePlan("/c/checkpoints/cp1", "/opt/criu")
    error = plan.failed(InternalError("criu failed: type RESTORE errno 0\nlog file: /b/restore.log"), bundle)
    assert str(error) == (
        "Cannot restore container from /c/checkpoints/cp1: criu failed: type RESTORE errno 0; "
        "log file: /b/restore.log: Error (criu/files-reg.c:1): File bin/x has bad size 1 (expect 2); "
        "Error (criu/cr-restore.c:2320): Restoring FAILED.; Error (criu/cgroup.c:1998): cg: cgroupd: recv req error"
    )
    assert criu_log_errors(os.path.join(bundle, "missing.log")) == ""


# -- the container backend's part ------------------------------------------------------


class _Runtime:
    def __init__(self):
        self.deleted = []

    def oom_killed(self, bundle, container_id):
        return False

    async def delete(self, container_id, force=False):
        self.deleted.append(container_id)


class _Exits:
    def start(self):
        pass

    def stop(self):
        pass


def container_backend(tmp_path):
    from twisted.internet import reactor

    return ContainerBackend(
        reactor,
        data_root=str(tmp_path / "root"),
        exec_root=str(tmp_path / "exec"),
        store=ContainerStore(),
        images=None,
        events=EventLog(),
        runtime=_Runtime(),
        exit_watcher=_Exits(),
        mounts=OverlayMounts(),
        log_reader_factory=lambda path: None,
    )


def _container(backend, tmp_path, policy="always"):
    directory = str(tmp_path / "root" / "containers" / ("c" * 64))
    os.makedirs(directory)
    c = Container(
        id="c" * 64, name="/web", created=1, image_id="sha256:img", config={"Image": "busybox"},
        host_config={"RestartPolicy": {"Name": policy, "MaximumRetryCount": 0}}, path="sh", args=[],
        directory=directory, state=State(running=True, pid=42),
    )
    backend.containers[c.id] = c
    backend.names[c.name] = c.id
    return c


def test_the_surface_the_checkpoint_backend_uses(tmp_path):
    backend = container_backend(tmp_path)
    c = _container(backend, tmp_path)
    assert backend.by_id(c.id) is c and backend.by_id("d" * 64) is None
    backend._runs[c.id] = _Run()
    backend.mark_checkpointed(c, True)
    assert backend._runs[c.id].checkpointed
    backend.mark_checkpointed(c, False)
    assert not backend._runs[c.id].checkpointed
    backend.exits.wait = lambda container_id: succeed(container_id)
    assert backend.wait_exit_code(c).result == c.id


@pytest_twisted.ensureDeferred
async def test_a_checkpointed_run_keeps_its_root_filesystem_mounted(tmp_path):
    """overlayfs syncs its upper file system when unmounted (where the
    images were just written), and the restore mounts it again: a
    checkpointed run's end leaves it mounted (its volumes and /dev/shm
    not), the next start takes it over, the shutdown unmounts it."""
    backend = container_backend(tmp_path)
    c = _container(backend, tmp_path)
    calls = []

    class Mounts:
        def unmount(self, target):
            calls.append(("unmount", target))

    backend.mounts = Mounts()

    async def unmount_volumes(container):
        calls.append(("volumes", container.id))

    backend.unmount_volumes = unmount_volumes
    merged = backend.overlay(c)["MergedDir"]
    run = _Run()
    run.checkpointed = True
    backend._runs[c.id] = run
    await backend.finish_run(c, 137)
    assert not c.state.running and calls == [("volumes", c.id)] and backend._kept_rootfs == {c.id}
    await backend.unmount_kept()
    assert calls[-1] == ("unmount", merged) and backend._kept_rootfs == set()
    # Any other end of a run unmounts it.
    c.state.running = True
    backend._runs[c.id] = _Run()
    del calls[:]
    await backend.finish_run(c, 0)
    assert calls[0] == ("unmount", merged) and backend._kept_rootfs == set()
    backend._cancel_restart(c)


@pytest_twisted.ensureDeferred
async def test_a_checkpointed_run_is_not_restarted(tmp_path):
    backend = container_backend(tmp_path)
    c = _container(backend, tmp_path)
    run = _Run()
    run.checkpointed = True
    backend._runs[c.id] = run
    await backend.finish_run(c, 137)
    assert not c.state.running and not c.state.restarting and c.state.exit_code == 137
    assert backend._restart_timers == {}
    # Without the mark the same exit is a crash that "always" restarts.
    c.state.running = True
    backend._runs[c.id] = _Run()
    await backend.finish_run(c, 137)
    assert c.state.restarting
    backend._cancel_restart(c)


@pytest_twisted.ensureDeferred
async def test_start_with_a_checkpoint(tmp_path):
    backend = container_backend(tmp_path)
    c = _container(backend, tmp_path)
    c.state = State(running=False, exit_code=137)
    c.manually_stopped = True
    with pytest.raises(InvalidParameter, match="^checkpoint is only supported in experimental mode$"):
        await backend.start("web", checkpoint="cp1")

    plans = []

    class Checkpoints:
        async def restore_plan(self, container, checkpoint, directory):
            plans.append((container.name, checkpoint, directory))
            if checkpoint == "zz":
                raise InternalError("checkpoint zz does not exist for container /web")
            return RestorePlan("/d/" + checkpoint, "/opt/criu")

    runs = []

    async def fake_run(container, restore=None, stale_runtime=False, prepared=False):
        runs.append(restore)
        container.state.running = True

    backend.checkpoints = Checkpoints()
    backend._run = fake_run
    with pytest.raises(InternalError):
        await backend.start("web", checkpoint="zz")
    # A missing checkpoint changes nothing.
    assert runs == [] and c.manually_stopped
    with open(c.path_of("checkpointed"), "w"):
        pass
    await backend.start("web", checkpoint="cp1", checkpoint_dir="/x")
    assert plans[-1] == ("/web", "cp1", "/x")
    assert runs[-1].directory == "/d/cp1" and not c.manually_stopped
    assert not os.path.exists(c.path_of("checkpointed"))
    # Running: 304 before any checkpoint is looked at.
    from twistedock.errors import NotModified

    with pytest.raises(NotModified):
        await backend.start("web", checkpoint="cp1")
    assert len(plans) == 2


# -- runc's state prepared for a restore over CRIU's RPC ------------------------------------


class _Rpc:
    def __init__(self, state_root, available=True):
        self.state_root = state_root
        self._available = available

    def available(self):
        return self._available


class _Store:
    def __init__(self, rpc):
        self.rpc = rpc


class _Images:
    def get(self, ref):
        return ref


def _preparing_backend(tmp_path, fail=False, available=True):
    """A container backend whose runtime "creates" runc's stopped state
    (a state.json naming live cgroup directories and a dead init), the
    run's set-up and tear-down recorded."""
    backend = container_backend(tmp_path)
    c = _container(backend, tmp_path)
    c.state = State(running=False, exit_code=0)
    state_root = str(tmp_path / "runc")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    done = []

    async def create_stopped(container_id, bundle):
        done.append(("create", container_id))
        if fail:
            raise InternalError("runc create failed: no")
        os.makedirs(os.path.join(state_root, container_id))
        state = {"init_process_pid": 2 ** 22 + 7, "init_process_start": 1, "cgroup_paths": {"memory": str(cgroup)},
                 "config": {"rootfs": backend.overlay(c)["MergedDir"], "namespaces": []}}
        with open(os.path.join(state_root, container_id, "state.json"), "w") as f:
            json.dump(state, f)

    async def delete(container_id, force=False):
        done.append(("delete", container_id))

    async def prepare_bundle(c, paths, bundle, restore=None, bare_network=False):
        done.append(("bundle", bare_network))

    async def unmount_run(c):
        done.append(("unmount",))

    backend.runtime.create_stopped = create_stopped
    backend.runtime.delete = delete
    backend._prepare_bundle = prepare_bundle
    backend.unmount_run = unmount_run
    backend._check_network = backend.check_joins = lambda c: None
    backend.images = _Images()
    backend.checkpoints = _Store(_Rpc(state_root, available))
    return backend, c, done


@pytest_twisted.ensureDeferred
async def test_prepare_restore_makes_runc_s_state_once(tmp_path):
    backend, c, done = _preparing_backend(tmp_path)
    assert await backend.prepare_restore("web") is True
    assert done == [("bundle", True), ("delete", c.id), ("create", c.id), ("unmount",)]
    assert os.path.exists(c.path_of("restore-prepared"))
    # Idempotent: the state is there, nothing made again.
    assert await backend.prepare_restore("web") is True
    assert len(done) == 4
    # A start uses it (stale runtime: reused by the RPC restore) and takes the mark.
    runs = []

    async def fake_run(container, restore=None, stale_runtime=False, prepared=False):
        runs.append((stale_runtime, prepared))

    backend._run = fake_run
    await backend.start("web")
    # (Its network namespace too: kept from the preparation.)
    assert runs == [(True, True)] and not os.path.exists(c.path_of("restore-prepared"))


@pytest_twisted.ensureDeferred
async def test_prepare_restore_refusals(tmp_path):
    backend, c, done = _preparing_backend(tmp_path)
    c.config["Tty"] = True
    assert await backend.prepare_restore("web") is False  # a terminal: runc restores
    c.config["Tty"] = False
    c.state.running = True
    from twistedock.errors import Conflict

    with pytest.raises(Conflict):
        await backend.prepare_restore("web")
    assert done == []
    backend, c, done = _preparing_backend(tmp_path / "2", available=False)
    assert await backend.prepare_restore("web") is False
    assert done == []
    backend.checkpoints = None
    with pytest.raises(InvalidParameter):
        await backend.prepare_restore("web")


@pytest_twisted.ensureDeferred
async def test_prepare_restore_that_fails_undoes_the_run(tmp_path):
    backend, c, done = _preparing_backend(tmp_path, fail=True)
    assert await backend.prepare_restore("web") is False
    assert done == [("bundle", True), ("delete", c.id), ("create", c.id), ("unmount",)]
    assert not os.path.exists(c.path_of("restore-prepared"))


@pytest_twisted.ensureDeferred
async def test_a_start_prepares_runc_s_state_for_an_rpc_restore(tmp_path):
    backend, c, done = _preparing_backend(tmp_path)
    rpc = backend.checkpoints.rpc
    images = tmp_path / "cp1"
    images.mkdir()
    plan = RestorePlan(str(images), "/opt/criu", rpc=rpc)
    root = backend.overlay(c)["MergedDir"]
    # A dump by runc (no cgroup mounts recorded beside it): runc restores.
    (images / "descriptors.json").write_text("[]")
    assert await backend._restore_state(c, plan, "/b", root) is False
    (images / "cgroup-mounts.json").write_text("[]")
    backend.prepare_restore_at_start = False
    assert await backend._restore_state(c, plan, "/b", root) is False
    assert done == []
    del backend.prepare_restore_at_start
    assert await backend._restore_state(c, plan, "/b", root) is True
    assert done == [("delete", c.id), ("create", c.id)]
    assert await backend._restore_state(c, plan, "/b", root) is True
    assert len(done) == 2
    # A terminal: runc restores; lazy pages too go over the RPC, CRIU asked
    # for them.
    assert not plan.over_rpc(True)
    assert RestorePlan(str(images), "/opt/criu", rpc=rpc, pages=object()).over_rpc(False)
    asked = []
    rpc.restore_session = lambda *args, **kwargs: asked.append((args, kwargs)) or "session"
    lazy = RestorePlan(str(images), "/opt/criu", rpc=rpc, pages=object())
    assert lazy.rpc_session(c.id, "/b", root, False, "now") == "session"
    assert plan.rpc_session(c.id, "/b", root, False, "now") == "session"
    assert [kwargs for _, kwargs in asked] == [{"lazy_pages": True, "tmpfs_sources": {}},
                                               {"lazy_pages": False, "tmpfs_sources": {}}]
    assert asked[0][0] == ("/opt/criu", c.id, str(images), "/b", root, False, "now")


# -- finding and checking CRIU -------------------------------------------------------------


def _script(path, text):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, 0o755)
    return str(path)


def test_find_criu_order(tmp_path, monkeypatch):
    provisioned = _script(tmp_path / "provisioned", "exit 0\n")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    _script(on_path / "criu", "exit 0\n")
    monkeypatch.setenv("PATH", str(on_path))
    assert find_criu("/given/criu", provisioned) == ("/given/criu", ["/given/criu"])
    assert find_criu(None, provisioned) == (provisioned, [provisioned])
    assert find_criu(None, str(tmp_path / "absent")) == (
        str(on_path / "criu"), [str(tmp_path / "absent"), "criu on PATH"]
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_criu(None, str(tmp_path / "absent"))[0] is None


@pytest_twisted.ensureDeferred
async def test_criu_check_verdicts(tmp_path, monkeypatch):
    from twisted.internet import reactor

    good = _script(tmp_path / "good", 'case "$1" in --version) echo "Version: 4.1.1";; check) echo "Looks good.";; esac\n')
    cache = str(tmp_path / "run" / "criu.kdat")
    status = await Criu(reactor, good, kdat_cache=cache).status()
    assert status == CriuStatus(
        good, "4.1.1", True, "", probe_cache="%s is not a tmpfs: CRIU probes the kernel at every checkpoint and restore"
        % (tmp_path / "run",)
    )
    assert await Criu(reactor, good, kdat_cache=cache).require("checkpoint") == good

    bad = _script(
        tmp_path / "bad",
        'case "$1" in --version) echo "Version: 3.17.1";; check) '
        'echo "Warn (criu/kerndat.c:1): whatever" >&2; '
        'echo "Error (criu/vdso.c:2): vdso: Unexpected rt vDSO area bounds" >&2; exit 1;; esac\n',
    )
    criu = Criu(reactor, bad, kdat_cache=cache)
    status = await criu.status()
    assert not status.works and status.version == "3.17.1"
    assert status.problem == '%s failed "criu check": vdso: Unexpected rt vDSO area bounds' % bad
    with pytest.raises(InternalError) as e:
        await criu.require("checkpoint")
    assert str(e.value) == "checkpoint needs CRIU: " + status.problem

    status = await Criu(reactor, "/bin/false", kdat_cache=cache).status()
    assert status.problem == '/bin/false failed "criu check": exit status 1'

    missing = str(tmp_path / "missing")
    status = await Criu(reactor, missing).status()
    assert status.problem.startswith("%s is not an executable file" % missing)

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status = await Criu(reactor, None, provisioned=str(tmp_path / "absent")).status()
    assert status.problem.startswith("no criu binary found (looked at %s, criu on PATH)" % (tmp_path / "absent"))


@pytest_twisted.ensureDeferred
async def test_criu_probe_cache_seeded_from_a_private_tmpfs(tmp_path):
    """/run not a tmpfs: the start-up check runs on a private tmpfs /run
    (the host's /run untouched) and the cache CRIU saved there is
    installed (0600, atomically) where CRIU loads it."""
    from twisted.internet import reactor

    if os.geteuid() != 0 or not os.access("/usr/bin/unshare", os.X_OK):
        pytest.skip("needs root and unshare")
    criu = _script(
        tmp_path / "criu",
        'case "$1" in --version) echo "Version: 4.1.1";; check) '
        'test -e /run/criu.kdat && exit 3; '
        'grep -q " /run tmpfs " /proc/mounts || exit 4; '
        'printf "KDAT\\001" > /run/criu.kdat; echo "Looks good.";; esac\n',
    )
    cache = tmp_path / "run" / "criu.kdat"
    cache.parent.mkdir()
    status = await Criu(reactor, criu, kdat_cache=str(cache)).status()
    assert status.works and status.probe_cache == ""
    assert cache.read_bytes() == b"KDAT\001"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert os.listdir(cache.parent) == ["criu.kdat"]
    assert not os.path.exists("/run/criu.kdat") or open("/run/criu.kdat", "rb").read() != b"KDAT\001"


def test_a_restore_through_runc_maps_the_masked_directories(tmp_path):
    """runc's CRIU told (the bundle's configuration file) where the
    masked directories a dump named external come from."""
    from twistedock.backend.restoreplan import RESTORE_CONFIG, RestorePlan
    from twistedock.backend.runtime.criuopts import MASKED_DIR_KEY

    class Driver:
        def masked_source(self):
            return "/run/td/criu/masked"

    spec = {}
    RestorePlan(str(tmp_path), "/criu", rpc=Driver()).adjust_spec(spec, str(tmp_path))
    assert spec["annotations"]["org.criu.config"] == str(tmp_path / RESTORE_CONFIG)
    assert (tmp_path / RESTORE_CONFIG).read_text() == (
        "manage-cgroups=ignore\next-mount-map=%s:/run/td/criu/masked\n" % MASKED_DIR_KEY)
    spec = {}
    RestorePlan(str(tmp_path), "/criu").adjust_spec(spec, str(tmp_path))
    assert (tmp_path / RESTORE_CONFIG).read_text() == "manage-cgroups=ignore\n"


def test_a_restore_through_runc_joins_a_network_namespace_left_out(tmp_path):
    """Images without a network namespace (CRIU dumped from inside it):
    runc runs CRIU through a script of the bundle's that enters the
    container's; an error when the container has none."""
    from twistedock.backend.restoreplan import CRIU_IN_NETNS, RESTORE_CONFIG, RestorePlan
    from twistedock.backend.runtime.criuopts import NET_LEFT_OUT

    images, bundle = tmp_path / "images", tmp_path / "bundle"
    images.mkdir()
    bundle.mkdir()
    plan = RestorePlan(str(images), "/usr/sbin/criu")
    spec = {"linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/run/td/net ns"}]}}
    plan.adjust_spec(spec, str(bundle))
    assert not (bundle / CRIU_IN_NETNS).exists()
    assert plan.create_arguments(str(bundle))["runtime_args"] == ["--criu=/usr/sbin/criu"]
    (images / NET_LEFT_OUT).write_text("")
    plan.adjust_spec(spec, str(bundle))
    assert (bundle / RESTORE_CONFIG).read_text() == "manage-cgroups=ignore\n"
    script = (bundle / CRIU_IN_NETNS).read_text()
    assert "exec nsenter --net='/run/td/net ns' -- /usr/sbin/criu \"$@\"" in script
    assert os.access(bundle / CRIU_IN_NETNS, os.X_OK)
    assert plan.create_arguments(str(bundle))["runtime_args"] == ["--criu=" + str(bundle / CRIU_IN_NETNS)]
    with pytest.raises(InternalError):
        plan.adjust_spec({"linux": {"namespaces": [{"type": "network"}]}}, str(bundle))


def test_install_kdat_cache_replaces_atomically(tmp_path):
    from twistedock.backend.runtime.criu import install_kdat_cache

    cache = tmp_path / "criu.kdat"
    cache.write_bytes(b"old")
    install_kdat_cache(b"new", str(cache))
    assert cache.read_bytes() == b"new" and os.listdir(tmp_path) == ["criu.kdat"]
    with pytest.raises(OSError):
        install_kdat_cache(b"x", str(tmp_path / "absent" / "criu.kdat"))


def test_a_client_going_away_does_not_cut_a_checkpoint_short(fake):
    backend, containers = fake
    c = containers.add("web")
    d = ensureDeferred(backend.create("web", {"CheckpointID": "cp1", "Exit": True}))
    d.cancel()
    failure_of(d)
    # runc goes on; when it is done the run is finished as a checkpoint's.
    assert backend.in_progress == 1
    containers.runtime.pending.pop().callback((b"", b"", 0))
    containers.exits.exit(c.id, 137)
    assert backend.in_progress == 0
    assert containers.finished == [("/web", 137, True)]
    assert os.path.isdir(os.path.join(c.directory, "checkpoints", "cp1"))
    assert containers.events == [("/web", "checkpoint")]


def test_criu_feature_probe_cache(tmp_path):
    """CRIU caches its kernel probe in /run/criu.kdat, on a tmpfs only; a
    criu.kdat.tmp left behind blocks every later save: removed once old."""
    from twistedock.backend.runtime.criu import prepare_kdat_cache

    run = tmp_path / "run"
    run.mkdir()
    cache = str(run / "criu.kdat")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw - ext4 /dev/sda rw\n"
        "25 22 0:23 / %s rw,nosuid - tmpfs tmpfs rw,mode=755\n" % (run,)
    )
    stale = run / "criu.kdat.tmp"
    stale.write_text("")
    os.utime(stale, (1000, 1000))
    assert prepare_kdat_cache(cache, now=1000 + 61, mountinfo=str(mountinfo)) == ""
    assert not stale.exists()
    # One being written right now is left alone.
    stale.write_text("")
    os.utime(stale, (1000, 1000))
    prepare_kdat_cache(cache, now=1000 + 5, mountinfo=str(mountinfo))
    assert stale.exists()
    mountinfo.write_text("22 1 0:21 / / rw - ext4 /dev/sda rw\n")
    assert prepare_kdat_cache(cache, mountinfo=str(mountinfo)) == (
        "%s is not a tmpfs: CRIU probes the kernel at every checkpoint and restore" % (run,)
    )


class _AheadPlan:
    """A restore plan over CRIU's RPC whose session records when CRIU is
    asked (the order of a start's steps in C{steps})."""

    def __init__(self, steps):
        self.steps = steps
        self.closed = []

    def rpc_session(self, container_id, bundle, root, terminal, now):
        plan = self

        class Session:
            resumed = 12.5

            def conmon_options(self):
                return {}

            async def start(self, ready=None):
                plan.steps.append("request")

            def close(self):
                plan.closed.append(True)

        return Session()

    def create_arguments(self, bundle=""):
        return {}

    async def prepare(self, bundle):
        self.steps.append("prepare")

    def prime(self):
        self.steps.append("prime")

    def adjust_spec(self, spec, bundle):
        pass

    def started(self, kill):
        pass

    def abort(self):
        self.steps.append("abort")

    def failed(self, error, bundle):
        return error

    def release(self):
        pass


def _ahead_world(tmp_path, steps):
    from .fake_runtime import World

    world = World(tmp_path)
    c = world.backend.get(world.create("web"))
    world.backend._restore_state_ready = lambda c, plan, root: True
    real_create, real_bundle = world.runtime.create, world.backend._prepare_bundle

    async def create(*args, **kwargs):
        steps.append("conmon")
        return await real_create(*args, **kwargs)

    async def prepare_bundle(*args, **kwargs):
        steps.append("bundle")
        return await real_bundle(*args, **kwargs)

    world.runtime.create = create
    world.backend._prepare_bundle = prepare_bundle
    return world, c


def test_a_prepared_restore_starts_conmon_and_criu_before_its_bundle(tmp_path):
    """conmon (and CRIU under it) spawned first, CRIU's request sent once
    the bundle is made; unprepared, the bundle first, as any start."""
    from .fake_runtime import run

    steps = []
    world, c = _ahead_world(tmp_path / "a", steps)
    plan = _AheadPlan(steps)
    # (When the restored tasks ran again, as CRIU's post-resume told.)
    assert run(world.backend._run(c, restore=plan, stale_runtime=True, prepared=True)) == 12.5
    # (The kernel's wait before a cgroup migration, and a lazy
    # checkpoint's fetcher, begun with them: RestorePlan.prepare.)
    assert steps == ["conmon", "prepare", "bundle", "request"]
    assert c.state.running and plan.closed
    del steps[:]
    world, c = _ahead_world(tmp_path / "b", steps)
    run(world.backend._run(c, restore=_AheadPlan(steps), stale_runtime=True, prepared=False))
    assert steps == ["bundle", "prepare", "conmon", "request"]


def test_a_restore_started_ahead_is_given_up_when_its_bundle_fails(tmp_path):
    """CRIU's socket closed (CRIU, then conmon, end), the fetcher begun
    with them stopped, the start failed."""
    from .fake_runtime import failure_of

    steps = []
    world, c = _ahead_world(tmp_path, steps)
    plan = _AheadPlan(steps)

    async def broken(*args, **kwargs):
        steps.append("bundle")
        raise InternalError("no bundle")

    world.backend._prepare_bundle = broken
    error = failure_of(world.backend._run(c, restore=plan, stale_runtime=True, prepared=True))
    assert "no bundle" in str(error)
    assert steps == ["conmon", "prepare", "bundle", "abort"] and plan.closed
    assert not c.state.running
