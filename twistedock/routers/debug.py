"""
The debug router (served with --debug): Python's counterparts of dockerd's
/debug/vars and /debug/pprof.  Profiles are taken while the reactor runs.
"""

from zope.interface import Interface

from ..errors import InvalidParameter, NotFound, NotImplementedYet
from ..server.httputils import APIRequest
from ..server.routing import route
from . import Router

ROUTES = (
    route("GET", "/debug/vars", "get_vars"),
    route("GET", "/debug/pprof/", "get_index"),
    route("GET", "/debug/pprof/cmdline", "get_cmdline"),
    route("GET", "/debug/pprof/profile", "get_profile"),
    route("GET", "/debug/pprof/symbol", "get_symbol"),
    route("GET", "/debug/pprof/trace", "get_trace"),
    route("GET", "/debug/pprof/{name}", "get_named_profile"),
)

#: Longest CPU profile or heap window a request may ask for, in seconds.
MAX_SECONDS = 600

PROFILES = {
    "heap": "memory allocated and still live, by allocation site (tracemalloc); "
    "?seconds=N shows the growth over N seconds, ?diff=1 the growth since the previous heap profile",
    "goroutine": "the stack of every thread, the reactor's included",
    "threadcreate": "the same as goroutine: Python threads are what goroutines are to dockerd",
}


class IDebugBackend(Interface):
    def variables():
        """Process and reactor figures (a JSON-able dict)."""

    def cmdline():
        """The daemon's command line."""

    def cpu_profile(seconds, binary):
        """Profile the reactor thread for C{seconds}: text, or pstats data (async)."""

    def heap_profile(seconds, diff=False):
        """Live allocations, or their growth over C{seconds}, or with
        C{diff} since the previous heap profile: text (async)."""

    def stacks():
        """Every thread's stack: text."""


def _seconds(req: APIRequest, default: int) -> int:
    seconds = req.int_query("seconds", default)
    if seconds < 0 or seconds > MAX_SECONDS:
        raise InvalidParameter("seconds must be between 0 and %d" % (MAX_SECONDS,))
    return seconds


class DebugRouter(Router):
    name = "debug"
    routes = ROUTES

    def __init__(self, backend: IDebugBackend) -> None:
        self.backend = backend

    def _text(self, req: APIRequest, text: str) -> None:
        data = text.encode("utf-8")
        req.set_header("Content-Type", "text/plain; charset=utf-8")
        req.set_header("Content-Length", str(len(data)))
        req.write(data)

    async def get_vars(self, req: APIRequest) -> None:
        req.write_json(self.backend.variables())

    async def get_index(self, req: APIRequest) -> None:
        lines = ["Profiles: GET /debug/pprof/NAME", ""]
        lines.append("profile: CPU profile of the reactor thread; ?seconds=N (default 30), "
                     "?format=pstats for data pstats.Stats can load")
        lines.append("cmdline: the daemon's command line")
        for name, what in sorted(PROFILES.items()):
            lines.append("%s: %s" % (name, what))
        self._text(req, "\n".join(lines) + "\n")

    async def get_cmdline(self, req: APIRequest) -> None:
        self._text(req, "\x00".join(self.backend.cmdline()))

    async def get_profile(self, req: APIRequest) -> None:
        seconds = _seconds(req, 30)
        binary = req.query("format") == "pstats"
        result = await self.backend.cpu_profile(seconds, binary)
        if binary:
            req.set_header("Content-Type", "application/octet-stream")
            req.set_header(
                "Content-Disposition", 'attachment; filename="twistedock.pstats"'
            )
            req.set_header("Content-Length", str(len(result)))
            req.write(result)
        else:
            self._text(req, result)

    async def get_symbol(self, req: APIRequest) -> None:
        raise NotImplementedYet("symbol lookup is for Go binaries; twistedock runs on Python")

    async def get_trace(self, req: APIRequest) -> None:
        raise NotImplementedYet(
            "execution traces are for Go binaries; use /debug/pprof/profile instead"
        )

    async def get_named_profile(self, req: APIRequest) -> None:
        name = req.vars["name"]
        if name == "heap" or name == "allocs":
            seconds = _seconds(req, 0)
            if req.bool_query("diff"):
                self._text(req, await self.backend.heap_profile(seconds, diff=True))
            else:
                self._text(req, await self.backend.heap_profile(seconds))
        elif name in ("goroutine", "threadcreate"):
            self._text(req, self.backend.stacks())
        else:
            raise NotFound("Unknown profile: %s" % (name,))
