"""run_coroutine: a handler's coroutine run without a Deferred until it waits."""

from twisted.internet.defer import CancelledError, Deferred, fail

from twistedock.server.app import run_coroutine


def test_a_coroutine_that_does_not_wait_gives_its_result():
    async def answer():
        return "done"

    assert run_coroutine(answer()) == "done"


def test_a_waiting_coroutine_gives_a_deferred_of_the_rest():
    first, second = Deferred(), Deferred()

    async def answer():
        a = await first
        b = await second
        return a + b

    d = run_coroutine(answer())
    results = []
    d.addCallback(results.append)
    first.callback(1)
    assert results == []
    second.callback(2)
    assert results == [3]


def test_a_failure_it_waits_on_is_raised_inside_it():
    waited = Deferred()

    async def answer():
        try:
            await waited
        except ValueError as e:
            return "caught %s" % (e,)

    d = run_coroutine(answer())
    results = []
    d.addCallback(results.append)
    waited.errback(ValueError("x"))
    assert results == ["caught x"]


def test_cancelling_the_deferred_cancels_what_it_waits_on():
    waited = Deferred()
    seen = []

    async def answer():
        try:
            await waited
        except CancelledError:
            seen.append("cancelled")
            raise

    d = run_coroutine(answer())
    failures = []
    d.addErrback(failures.append)
    d.cancel()
    assert seen == ["cancelled"]
    assert failures[0].check(CancelledError)


def test_an_error_before_waiting_is_raised_to_the_caller():
    async def answer():
        await fail(KeyError("k"))

    try:
        run_coroutine(answer())
    except KeyError:
        pass
    else:
        raise AssertionError("no KeyError")
