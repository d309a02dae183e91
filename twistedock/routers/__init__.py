"""
One module per Engine API router.  Each holds its route table (moby's paths
and methods, one line a route, in moby's registration order), the backend
interface it calls, and its handlers.  A route whose handler is C{None} is
listed but not served yet: it answers 501.
"""

from functools import cached_property


class Router:
    """A route table and the handlers it names (methods of the router)."""

    name: str = ""
    routes: tuple = ()

    @cached_property
    def app(self):
        """This router alone as a Klein app, bare paths, in the default
        configuration: C{StubTreq(router.app.resource())} tests it."""
        from ..server.app import build_app
        from ..server.middleware import APIConfig

        return build_app(self, APIConfig())
