"""Events: SIGHUP makes the daemon re-read daemon.json and log a daemon
reload event, which docker events shows from history and live."""

import json
import queue
import signal
import socket
import threading
import time

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.e2e

LABELS = ["a=b"]


@pytest.fixture(scope="module")
def daemon(module_daemons):
    return module_daemons.start(config={"labels": LABELS})


def stamp(t: float) -> str:
    return "%.6f" % t


def reload(daemon, labels):
    """Rewrite daemon.json with C{labels}, SIGHUP, and wait until /info shows
    them: by then the reload event has been logged. (t0, t1) around it."""
    t0 = time.time()
    daemon.write_config({"labels": labels})
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.info()["Labels"] == labels, 10, what="labels %r in /info" % labels)
    t1 = time.time()
    return t0, t1


def json_lines(text: str):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_reload_event(event, daemon, labels):
    assert event["Type"] == "daemon", event
    assert event["Action"] == "reload", event
    assert event["scope"] == "local", event
    assert event["Actor"]["ID"] == daemon.info()["ID"], event
    attributes = event["Actor"]["Attributes"]
    assert attributes["labels"] == "[" + " ".join(labels) + "]", event
    assert attributes["name"] == socket.gethostname(), event
    assert attributes["debug"] == "false", event
    assert event["timeNano"] // 1_000_000_000 == event["time"], event


class LineReader:
    """The lines a subprocess prints, read with a timeout."""

    def __init__(self, stream) -> None:
        self.lines: "queue.Queue" = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout: float):
        return self.lines.get(timeout=timeout)


@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/events")
def test_sighup_reloads_labels_and_logs_event(daemon):
    assert daemon.info()["Labels"] == LABELS
    labels = ["a=b", "c=d"]
    t0, t1 = reload(daemon, labels)
    assert daemon.docker_json("info", format="{{json .Labels}}") == labels
    assert "configuration reloaded from %s" % daemon.config_file in daemon.log_text()

    # --until in the past: the command prints history and exits by itself
    # (a stream that did not end would fail on the 15 s timeout).
    result = daemon.docker(
        "system", "events", "--since", stamp(t0), "--until", stamp(t1), "--format", "{{json .}}",
        timeout=15,
    )
    events = json_lines(result.stdout)
    assert len(events) == 1, result.stdout
    assert_reload_event(events[0], daemon, labels)
    assert t0 * 1e9 <= events[0]["timeNano"] <= t1 * 1e9

    # The plain text output names it too.
    text = daemon.docker("events", "--since", stamp(t0), "--until", stamp(t1), timeout=15).stdout
    assert " daemon reload %s " % events[0]["Actor"]["ID"] in text, text

    # Before t0: nothing.
    before = daemon.docker(
        "events", "--since", stamp(t0 - 3600), "--until", stamp(t0), timeout=15
    ).stdout
    assert before.strip() == ""


@pytest.mark.route("GET", "/events")
def test_event_filters(daemon):
    t0, t1 = reload(daemon, ["a=b", "e=f"])
    window = ["--since", stamp(t0), "--until", stamp(t1), "--format", "{{json .}}"]

    matching = daemon.docker(
        "events", "--filter", "type=daemon", "--filter", "event=reload", *window, timeout=15
    ).stdout
    events = json_lines(matching)
    assert len(events) == 1, matching
    assert_reload_event(events[0], daemon, ["a=b", "e=f"])

    # The daemon filter takes the daemon's ID or name.
    by_id = daemon.docker(
        "events", "--filter", "daemon=%s" % events[0]["Actor"]["ID"], *window, timeout=15
    ).stdout
    assert len(json_lines(by_id)) == 1, by_id

    for other in (["type=container"], ["event=start"], ["type=daemon", "event=start"]):
        args = []
        for f in other:
            args += ["--filter", f]
        result = daemon.docker("events", *args, *window, timeout=15)
        assert result.stdout.strip() == "", (other, result.stdout)


@pytest.mark.route("GET", "/events")
def test_live_events_see_reload(daemon):
    listeners = daemon.info()["NEventsListener"]
    proc = daemon.docker_popen("events", "--format", "{{json .}}")
    try:
        reader = LineReader(proc.stdout)
        # The CLI is subscribed once the daemon counts one more listener.
        wait_for(
            lambda: proc.poll() is not None or daemon.info()["NEventsListener"] > listeners,
            10,
            what="the events listener",
        )
        assert proc.poll() is None, proc.stderr.read()
        labels = ["a=b", "live=yes"]
        daemon.write_config({"labels": labels})
        daemon.signal(signal.SIGHUP)
        line = reader.get(timeout=10)
        assert line is not None, proc.stderr.read()
        assert_reload_event(json.loads(line), daemon, labels)
        # Still following: no end of stream yet.
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    wait_for(lambda: daemon.info()["NEventsListener"] == listeners, 10, what="unsubscribe")


@pytest.mark.route("GET", "/events")
def test_events_until_in_the_future_ends_by_itself(daemon):
    listeners = daemon.info()["NEventsListener"]
    since = time.time()
    until = since + 3
    proc = daemon.docker_popen(
        "events", "--since", stamp(since), "--until", stamp(until), "--format", "{{json .}}"
    )
    try:
        wait_for(
            lambda: proc.poll() is not None or daemon.info()["NEventsListener"] > listeners,
            10,
            what="the events listener",
        )
        # Events before --until are delivered live...
        labels = ["a=b", "until=soon"]
        reload(daemon, labels)
        # ...and at --until the stream ends and the CLI exits 0 by itself.
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    # Not before --until (the daemon's clock is this machine's).
    assert time.time() >= until
    assert proc.returncode == 0, err
    events = json_lines(out)
    assert len(events) == 1, out
    assert_reload_event(events[0], daemon, labels)
