"""The debug backend on the real reactor: figures, profiles, stacks."""

import marshal
import os

import pytest
import pytest_twisted

from twistedock.backend.debug import DebugBackend
from twistedock.errors import Conflict

from .memory import API


def test_variables():
    from twisted.internet import reactor

    figures = DebugBackend(reactor).variables()
    assert figures["pid"] == os.getpid()
    assert figures["memstats"]["rss_bytes"] > 0
    assert figures["threads"] >= 1
    assert set(figures["reactor"]) == {"type", "delayed_calls", "readers", "writers"}


@pytest_twisted.ensureDeferred
async def test_cpu_profile_sees_reactor_work():
    from twisted.internet import reactor, task

    backend = DebugBackend(reactor)

    def busy():
        sum(i * i for i in range(20000))

    loop = task.LoopingCall(busy)
    loop.start(0.01)
    try:
        text = await backend.cpu_profile(1, binary=False)
    finally:
        loop.stop()
    assert "CPU profile of the reactor thread over 1 s" in text
    assert "busy" in text
    data = await backend.cpu_profile(0, binary=True)
    assert isinstance(marshal.loads(data), dict)


@pytest_twisted.ensureDeferred
async def test_one_cpu_profile_at_a_time():
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    backend = DebugBackend(reactor)
    first = ensureDeferred(backend.cpu_profile(1, binary=False))
    with pytest.raises(Conflict):
        await backend.cpu_profile(1, binary=False)
    await first


@pytest_twisted.ensureDeferred
async def test_heap_profile():
    from twisted.internet import reactor

    text = await DebugBackend(reactor).heap_profile(0)
    assert "live:" in text
    growth = await DebugBackend(reactor).heap_profile(1)
    assert growth.startswith("growth over 1 s:")


@pytest_twisted.ensureDeferred
async def test_heap_growth_since_the_previous_profile():
    import tracemalloc

    from twisted.internet import reactor

    backend = DebugBackend(reactor)
    was_tracing = tracemalloc.is_tracing()
    try:
        await backend.heap_profile(0)
        kept = [bytearray(1000) for _ in range(500)]
        growth = await backend.heap_profile(0, diff=True)
        assert growth.startswith("growth since the previous heap profile: +")
        assert "test_debug.py" in growth.splitlines()[1]
        assert backend.variables()["memstats"]["traced_bytes"] > 500_000
        del kept
    finally:
        if not was_tracing:
            tracemalloc.stop()


def test_stacks_show_every_thread():
    from twisted.internet import reactor

    assert "thread" in DebugBackend(reactor).stacks()


@pytest.mark.route("GET", "/debug/pprof/{name}")
@pytest.mark.route("GET", "/debug/pprof/profile")
@pytest.mark.route("GET", "/debug/pprof/symbol")
def test_router_answers():
    from .test_routing import MemoryDebugBackend

    api = API(debug_backend=MemoryDebugBackend())
    answer = api.request("GET", "/debug/pprof/nope")
    assert answer.code == 404
    assert answer.json() == {"message": "Unknown profile: nope"}
    answer = api.request("GET", "/debug/pprof/profile?seconds=100000")
    assert answer.code == 400
    assert api.request("GET", "/debug/pprof/symbol").code == 501
    answer = api.request("GET", "/debug/pprof/profile?seconds=1&format=pstats")
    assert answer.header("Content-Type") == "application/octet-stream"
    assert answer.body == b"data"
