"""--debug: request logging with secrets masked, /debug/vars and /debug/pprof."""

import re
import threading
import time

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def debug_daemon(module_daemons):
    return module_daemons.start("--debug")


@pytest.mark.route("GET", "/debug/vars")
def test_debug_vars(debug_daemon):
    resp = debug_daemon.request("GET", "/debug/vars")
    assert resp.status == 200, resp
    assert resp.headers["Content-Type"] == "application/json"
    data = resp.json()
    assert data["pid"] == debug_daemon.proc.pid
    assert "dockerd" in data["cmdline"]
    assert data["uptime_seconds"] > 0
    assert data["memstats"]["rss_bytes"] > 0


@pytest.mark.route("GET", "/debug/pprof/profile")
@pytest.mark.route("GET", "/_ping")
def test_cpu_profile_does_not_block_the_daemon(debug_daemon):
    result = {}

    def profile():
        started = time.monotonic()
        result["resp"] = debug_daemon.request("GET", "/debug/pprof/profile?seconds=1", timeout=15)
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=profile)
    thread.start()
    try:
        # Wait until the profile request is being served, then ping.
        debug_daemon.wait_for_log(r"Calling GET /debug/pprof/profile\?seconds=1$")
        ping = debug_daemon.request("GET", "/_ping", timeout=5)
        assert ping.status == 200 and ping.body == b"OK"
        # The ping was answered while the profile was still being taken
        # (its answer is not logged yet: it has not been sent).
        assert not re.search(r"GET /debug/pprof/profile\?seconds=1 200 ", debug_daemon.log_text())
        assert thread.is_alive()
    finally:
        thread.join(15)
    resp = result["resp"]
    assert resp.status == 200, resp
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.text.startswith("CPU profile of the reactor thread over 1 s\n"), resp.text[:300]
    assert "function calls" in resp.text
    assert result["elapsed"] >= 1.0


@pytest.mark.route("GET", "/debug/pprof/{name}")
def test_heap_profile(debug_daemon):
    resp = debug_daemon.request("GET", "/debug/pprof/heap", timeout=30)
    assert resp.status == 200, resp
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert re.search(r"^live: \d+ bytes in \d+ blocks$", resp.text, re.M), resp.text[:300]


@pytest.mark.route("GET", "/info")
@pytest.mark.route("GET", "/swarm")
def test_requests_are_logged(debug_daemon):
    resp = debug_daemon.request("GET", "/v1.51/info?probe=logged")
    assert resp.status == 200
    debug_daemon.wait_for_log(r"Calling GET /v1\.51/info\?probe=logged$")
    debug_daemon.wait_for_log(r"GET /v1\.51/info\?probe=logged 200 \d+\.\dms$")
    # Errors too, with their status.
    debug_daemon.request("GET", "/v1.51/swarm?probe=logged")
    debug_daemon.wait_for_log(r"GET /v1\.51/swarm\?probe=logged 503 \d+\.\dms$")


#: A login to a loopback port nobody listens on: refused (500), logged masked.
LOGIN = {"username": "e2e-user", "password": "hunter2-e2e", "serveraddress": "127.0.0.1:1"}


@pytest.mark.route("POST", "/auth")
def test_password_is_not_logged(debug_daemon):
    resp = debug_daemon.request("POST", "/v1.51/auth?probe=password", body=LOGIN)
    assert resp.status == 500, resp
    debug_daemon.wait_for_log(r"POST /v1\.51/auth\?probe=password 500 \d+\.\dms$")
    assert "hunter2-e2e" not in debug_daemon.log_text()


@pytest.mark.route("POST", "/auth")
def test_post_body_is_logged_masked(debug_daemon):
    debug_daemon.request("POST", "/v1.51/auth?probe=masked", body=LOGIN)
    debug_daemon.wait_for_log(r"POST /v1\.51/auth\?probe=masked 500 \d+\.\dms$")
    log = debug_daemon.log_text()
    assert "hunter2-e2e" not in log
    # dockerd: "form data: {"password":"*****","serveraddress":...,"username":"e2e-user"}"
    assert re.search(r'"password": ?"\*\*\*\*\*"', log), log[-2000:]
    assert "e2e-user" in log


# No route mark: without --debug these routes do not exist (the catch-all answers).
def test_debug_routes_need_debug(default_daemon):
    for target in ("/debug/vars", "/debug/pprof/heap"):
        resp = default_daemon.request("GET", target)
        assert resp.status == 404, resp
        assert resp.json() == {"message": "page not found"}
    # And nothing is logged per request.
    assert "Calling GET" not in default_daemon.log_text()
