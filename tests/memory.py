"""In-memory backends and a StubTreq client over the composed root resource."""

import json

import attr
from treq.testing import StubTreq
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted.internet.defer import succeed

from twistedock.backend.events import EventLog
from twistedock.backend.networks.store import NetworkStore
from twistedock.backend.swarm import InactiveCluster
from twistedock.daemon import build_routers
from twistedock.routers.system import ISystemBackend, PingInfo
from twistedock.server.middleware import APIConfig
from twistedock.server.root import APIResource, compose

BASE = "http://docker"


@implementer(ISystemBackend)
class MemorySystemBackend:
    """Fixed documents and a real event log on a test clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events = EventLog(now=lambda: int(round(clock.seconds() * 1e9)))
        self.info = {"ID": "memory", "Containers": 0, "Images": 0}
        self.fail_with = None

    async def ping(self):
        return PingInfo(builder_version="1", swarm="inactive")

    async def system_info(self):
        if self.fail_with is not None:
            raise self.fail_with
        return dict(self.info)

    async def system_version(self):
        return {"Version": "memory", "ApiVersion": "1.51"}

    async def disk_usage(self, types):
        return {
            "LayersSize": 0,
            "Images": [] if "image" in types else None,
            "Containers": [] if "container" in types else None,
            "Volumes": [] if "volume" in types else None,
            "BuildCache": [] if "build-cache" in types else None,
        }

    async def subscribe_to_events(self, since, until, filters):
        return self.events.subscribe(since, until, filters)

    def unsubscribe_from_events(self, subscription):
        self.events.unsubscribe(subscription)

    async def authenticate(self, auth_config):
        from twistedock.errors import NotImplementedYet

        raise NotImplementedYet("registry login is not implemented yet")


@attr.s(auto_attribs=True)
class Answer:
    code: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        values = self.headers.get(name.lower())
        return values[0] if values else None


class API:
    """The composed resource with in-memory backends, and a client for it."""

    def __init__(self, experimental=False, debug_backend=None, system=None, min_version=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)  # a wall-clock time, for since/until
        self.system = system or MemorySystemBackend(self.clock)
        self.containers = MemoryContainerBackend()
        self.volumes = MemoryVolumeBackend()
        self.networks = MemoryNetworks(self.system.events)
        self.containers.networks = self.networks
        self.routers = build_routers(
            self.clock, self.system, InactiveCluster(), debug_backend, containers=self.containers,
            volumes=self.volumes, networks=self.networks,
        )
        config = APIConfig(experimental=experimental, debug=False)
        if min_version is not None:
            config = attr.evolve(config, min_version=min_version)
        self.resource = APIResource(compose(self.routers, config))
        self.treq = StubTreq(self.resource)

    def request(self, method, path, body=None, headers=None, json_body=None) -> Answer:
        """Make a request that completes; its whole answer."""
        headers = dict(headers or {})
        data = body
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        d = self.treq.request(method, BASE + path, data=data, headers=headers)
        self.treq.flush()
        response = result_of(d)
        content = self.treq.content(response)
        self.treq.flush()
        return Answer(
            response.code,
            {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()},
            result_of(content),
        )

    def stream(self, method, path):
        """Start a request whose body streams: (response, received chunks, done)."""
        d = self.treq.request(method, BASE + path)
        self.treq.flush()
        response = result_of(d)
        chunks = []
        from treq import collect

        done = collect(response, chunks.append)
        self.treq.flush()
        return response, chunks, done


def result_of(d):
    """The result of a Deferred that has fired; fail the test otherwise."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    result = results[0]
    from twisted.python.failure import Failure

    if isinstance(result, Failure):
        result.raiseException()
    return result


class MemoryNetworkDriver:
    """A netavark that changes nothing: each setup answers a MAC address."""

    def __init__(self):
        self.calls = []

    async def setup(self, netns, options):
        self.calls.append(("setup", netns, options))
        return {key: {"interfaces": {net["interface_name"]: {"mac_address": "02:42:ac:11:00:02"}}}
                for key, net in options["networks"].items()}

    async def teardown(self, netns, options):
        self.calls.append(("teardown", netns, options))

    async def create_netns(self, path):
        self.calls.append(("create_netns", path))

    async def loopback_up(self, path):
        self.calls.append(("loopback_up", path))

    async def rename_dns(self, network, container_id, old, new):
        self.calls.append(("rename_dns", network, container_id, old, new))

    async def redirect_dns(self, netns, gateway):
        self.calls.append(("redirect_dns", netns, gateway))

    async def remove_netns(self, path):
        self.calls.append(("remove_netns", path))

    async def anchor(self, bridge):
        self.calls.append(("anchor", bridge))

    async def release(self, bridge, options):
        self.calls.append(("release", bridge, options))


class MemoryNetworks(NetworkStore):
    """The network store with nothing written: records in memory, a
    driver that changes nothing, no routes on the host."""

    def __init__(self, events, routes=lambda: [], **kwargs):
        super().__init__(None, "/nonexistent", events, MemoryNetworkDriver(), routes=routes, **kwargs)
        self.make_predefined()

    def _write(self, record):
        pass

    def save(self, record):
        return succeed(None)

    def _thread(self, function, *args):
        return succeed(None)


@implementer(__import__("twistedock.routers.container", fromlist=["IContainerBackend"]).IContainerBackend)
class MemoryContainerBackend:
    """Containers as dicts: enough life cycle to exercise the router."""

    def __init__(self):
        from twisted.internet.defer import Deferred

        self._Deferred = Deferred
        self.containers = {}
        self.calls = []
        self.waiters = {}

    def _get(self, name):
        from twistedock.errors import NotFound

        if name not in self.containers:
            raise NotFound("No such container: %s" % name)
        return self.containers[name]

    async def connect_network(self, network_ref, container_ref, endpoint_config):
        record = self.networks.resolve(network_ref)
        c = self._get(container_ref)
        cid = c["Id"].ljust(64, "0")
        await self.networks.join(cid, c["Id"], "/memory/netns/" + c["Id"], [(record, endpoint_config)])

    async def disconnect_network(self, network_ref, container_ref, force):
        from twistedock.errors import Forbidden

        record = self.networks.resolve(network_ref)
        c = self._get(container_ref)
        cid = c["Id"].ljust(64, "0")
        if cid not in record["Endpoints"]:
            raise Forbidden("container %s is not connected to the network %s" % (cid, record["Name"]))
        await self.networks.leave(cid, [record])

    async def create(self, name, config, host_config, networking_config, api_version):
        self.containers[name] = {
            "Id": name, "Running": False, "Tty": bool(config.get("Tty")), "ExitCode": 0,
            "Config": config, "HostConfig": host_config, "Logs": [],
        }
        return {"Id": name, "Warnings": []}

    async def start(self, name):
        from twistedock.errors import NotModified

        c = self._get(name)
        if c["Running"]:
            raise NotModified("Container already started")
        c["Running"] = True

    def exit(self, name, code):
        c = self._get(name)
        c["Running"], c["ExitCode"] = False, code
        for d in self.waiters.pop(name, []):
            d.callback({"StatusCode": code, "Error": None})

    async def stop(self, name, signal, timeout):
        self.calls.append(("stop", name, signal, timeout))
        self.exit(name, 143)

    async def kill(self, name, signal):
        self.calls.append(("kill", name, signal))
        self.exit(name, 137)

    async def restart(self, name, signal, timeout):
        self.calls.append(("restart", name, signal, timeout))

    async def pause(self, name):
        self._get(name)

    async def unpause(self, name):
        self._get(name)

    def wait(self, name, condition):
        from twisted.internet.defer import succeed

        c = self._get(name)
        if condition == "not-running" and not c["Running"]:
            return succeed({"StatusCode": c["ExitCode"], "Error": None})
        d = self._Deferred()
        self.waiters.setdefault(name, []).append(d)
        return d

    async def remove(self, name, force, volumes, link=False):
        self._get(name)
        del self.containers[name]

    async def rename(self, name, new_name):
        self.containers[new_name] = self.containers.pop(name)

    async def update(self, name, update):
        self._get(name)["HostConfig"].update(update)
        return {"Warnings": None}

    async def top(self, name, ps_args):
        return {"Titles": ["PID"], "Processes": [], "ps_args": ps_args}

    async def list(self, all, limit, size, filters, api_version):
        return [{"Id": c["Id"]} for c in self.containers.values() if all or c["Running"]]

    async def inspect(self, name, size, api_version):
        c = self._get(name)
        return {"Id": c["Id"], "State": {"Running": c["Running"]}}

    async def prune(self, filters):
        return {"ContainersDeleted": None, "SpaceReclaimed": 0}

    def tty(self, name):
        return self._get(name)["Tty"]

    async def logs(self, name, options, writer):
        for stream, data in self._get(name)["Logs"]:
            writer.write(stream, data)

    async def stats(self, name, config, out):
        from twistedock.errors import InvalidParameter

        c = self._get(name)
        if config.stream and config.one_shot:
            raise InvalidParameter("cannot have stream=true and one-shot=true")
        self.calls.append(("stats", name, config))
        out.start()
        for frame in c.get("Stats", [{"id": name}]):
            out.write(frame)
            if not config.stream:
                return
        if config.stream:
            ended = self._Deferred()
            self.waiters.setdefault("stats:" + name, []).append(ended)
            await ended

    def check_attach(self, name, config):
        self._get(name)

    async def attach(self, name, config, stream):
        stream.close()

    async def resize(self, name, height, width):
        self.calls.append(("resize", name, height, width))


@implementer(__import__("twistedock.routers.container", fromlist=["IExecBackend"]).IExecBackend)
class MemoryExecBackend:
    """Execs as dicts in the containers of a L{MemoryContainerBackend}.  A
    started exec echoes its stdin to stdout (as C{cat}), then writes its
    C{Output} pieces and ends with its C{Code} once its stdin closed, or
    when L{finish} says so; C{Fail} makes the start fail."""

    def __init__(self, containers):
        self.containers = containers
        self.execs = {}
        self.calls = []
        self._ends = {}

    def _get(self, exec_id):
        from twistedock.errors import NotFound

        if exec_id not in self.execs:
            raise NotFound("No such exec instance: %s" % (exec_id,))
        return self.execs[exec_id]

    def _running_container(self, name):
        from twistedock.errors import Conflict

        c = self.containers._get(name)
        if not c["Running"]:
            raise Conflict("Container %s is not running" % (c["Id"],))
        return c

    async def create_exec(self, name, config):
        c = self._running_container(name)
        exec_id = "%064x" % (len(self.execs) + 1)
        self.execs[exec_id] = {
            "ID": exec_id, "Container": c["Id"], "Config": config, "Running": False,
            "ExitCode": None, "Output": [], "Code": 0, "Fail": None,
        }
        return exec_id

    def inspect_exec(self, exec_id):
        e = self._get(exec_id)
        return {"ID": e["ID"], "Running": e["Running"], "ExitCode": e["ExitCode"],
                "ContainerID": e["Container"]}

    def check_exec(self, exec_id):
        self._running_container(self._get(exec_id)["Container"])

    async def start_exec(self, exec_id, config):
        from twistedock.errors import Conflict

        e = self._get(exec_id)
        stream = config.stream
        self.calls.append(("start", exec_id, stream is None, config.console_size))
        if e["ExitCode"] is not None:
            raise Conflict("Error: Exec command %s has already run" % (exec_id,))
        if e["Running"]:
            raise Conflict("Error: Exec command %s is already running" % (exec_id,))
        if e["Fail"] is not None:
            e["ExitCode"] = 126
            raise e["Fail"]
        e["Running"] = True
        if stream is None:
            return
        from twisted.internet.defer import Deferred

        ended = Deferred()
        self._ends[exec_id] = ended

        def stdin_closed():
            e.setdefault("StdinClosed", True)
            self.finish(exec_id)

        stream.read_input(lambda data: stream.write(1, data), stdin_closed)
        stream.closed.addCallback(lambda _: self.finish(exec_id))
        await ended
        for stream_id, data in e["Output"]:
            stream.write(stream_id, data)

    def finish(self, exec_id, code=None):
        """End a running exec (with C{code}, else its C{Code})."""
        e = self._get(exec_id)
        if e["Running"]:
            e["Running"] = False
            e["ExitCode"] = e["Code"] if code is None else code
            ended = self._ends.pop(exec_id, None)
            if ended is not None and not ended.called:
                ended.callback(None)

    async def resize_exec(self, exec_id, height, width):
        self.check_exec(exec_id)
        self.calls.append(("resize", exec_id, height, width))


@implementer(__import__("twistedock.routers.volume", fromlist=["IVolumeBackend"]).IVolumeBackend)
class MemoryVolumeBackend:
    """Volumes as dicts, with the local driver's answers; C{in_use} names
    the volumes containers reference (name: [container IDs])."""

    ANONYMOUS = "com.docker.volume.anonymous"

    def __init__(self):
        self.volumes = {}
        self.in_use = {}
        self.counter = 0

    def _doc(self, name, labels, options):
        return {"CreatedAt": "2026-01-01T00:00:00Z", "Driver": "local", "Labels": labels,
                "Mountpoint": "/var/lib/docker/volumes/%s/_data" % name, "Name": name,
                "Options": options, "Scope": "local"}

    async def create(self, name, driver, driver_opts, labels):
        from twistedock.backend.volumes import local
        from twistedock.errors import InvalidParameter, NotFound

        if not name:
            self.counter += 1
            name = "%064x" % self.counter
            labels = dict(labels or {}, **{self.ANONYMOUS: ""})
        if driver and driver != "local":
            raise NotFound('create %s: error looking up volume plugin %s: plugin "%s" not found'
                           % (name, driver, driver))
        if name not in self.volumes:
            try:
                local.validate_name(name)
                local.validate_opts(driver_opts)
            except InvalidParameter as e:
                raise InvalidParameter("create %s: %s" % (name, e.message))
            self.volumes[name] = self._doc(name, labels, driver_opts)
        return dict(self.volumes[name])

    async def get(self, name):
        from twistedock.errors import NotFound

        if name not in self.volumes:
            raise NotFound("get %s: no such volume" % (name,))
        return dict(self.volumes[name])

    def _matches(self, doc, filters):
        if filters.contains("name") and not any(v in doc["Name"] for v in filters.get("name")):
            return False
        if not filters.match_kv_list("label", doc["Labels"]):
            return False
        if filters.contains("dangling"):
            dangling = filters.get_bool_or_default("dangling", False)
            if dangling == bool(self.in_use.get(doc["Name"])):
                return False
        return True

    async def list(self, filters):
        filters.validate(("dangling", "name", "driver", "label"))
        return [dict(v) for v in self.volumes.values() if self._matches(v, filters)], None

    async def remove(self, name, force):
        from twistedock.errors import Conflict, NotFound

        if name not in self.volumes:
            if force:
                return
            raise NotFound("get %s: no such volume" % (name,))
        if self.in_use.get(name):
            raise Conflict("remove %s: volume is in use - [%s]" % (name, ", ".join(self.in_use[name])))
        del self.volumes[name]

    async def prune(self, filters):
        everything = filters.get("all") == {"true"}
        filters.fields.pop("all", None)
        filters.validate(("label", "label!"))
        deleted = []
        for name, doc in list(self.volumes.items()):
            if self.in_use.get(name) or not self._matches(doc, filters):
                continue
            if not everything and self.ANONYMOUS not in (doc["Labels"] or {}):
                continue
            del self.volumes[name]
            deleted.append(name)
        return {"VolumesDeleted": deleted, "SpaceReclaimed": 0}
