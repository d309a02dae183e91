"""C{twistedock events} follows a daemon's events live, filtered, until
stopped; the daemon found from DOCKER_HOST."""

import json
import os
import signal
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT, wait_for
from .test_containers import daemon  # noqa: F401  (the busybox daemon fixture)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


@pytest.mark.route("GET", "/events")
def test_events_tail_with_filters(daemon, tmp_path):  # noqa: F811
    env = dict(os.environ, DOCKER_HOST=daemon.host, DOCKER_CONFIG=str(tmp_path),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DOCKER_CONTEXT", None)
    tail = subprocess.Popen(
        [sys.executable, "-m", "twistedock.cli", "events", "--filter", "type=container",
         "--filter", "event=die", "--filter", "label=tail=yes", "--format", "json"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Its subscription is made before the containers run: wait for the
        # daemon to count a listener.
        wait_for(lambda: daemon.info().get("NEventsListener", 0) >= 1, 15, what="the events listener")
        daemon.docker("run", "--rm", "--network", "none", "--label", "tail=no", "busybox", "true")
        daemon.docker("run", "--rm", "--network", "none", "--label", "tail=yes", "--name", "tailed",
                      "busybox", "sh", "-c", "exit 3", check=False)
        event = json.loads(tail.stdout.readline())
        assert (event["Type"], event["Action"]) == ("container", "die")
        assert event["Actor"]["Attributes"]["name"] == "tailed"
        assert event["Actor"]["Attributes"]["exitCode"] == "3"
    finally:
        tail.send_signal(signal.SIGINT)
        try:
            tail.wait(10)
        except subprocess.TimeoutExpired:
            tail.kill()
            tail.wait()
