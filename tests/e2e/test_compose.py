"""Compose 1.29 (Debian 12's docker-compose) against the daemon: a web
service serving a file from a named volume, healthy before its client
starts, reached by name over the project's network and through a port
published on the host's loopback; C{down -v} leaves nothing behind.
Traffic goes only to loopback and to the test's own containers."""

import os
import re
import secrets
import shutil
import subprocess
import urllib.request

import pytest

from .test_containers import import_busybox
from .test_networks import host_state

COMPOSE = shutil.which("docker-compose")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="networks need root"),
    pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed"),
    pytest.mark.skipif(not any(os.path.exists(p) for p in ("/usr/lib/podman/netavark",
                                                           "/usr/libexec/podman/netavark")),
                       reason="netavark is not installed"),
]

TAG = secrets.token_hex(3)


def _compose_major() -> int:
    if COMPOSE is None:
        return 1
    out = subprocess.run([COMPOSE, "version", "--short"], capture_output=True, text=True).stdout.strip()
    try:
        return int(out.lstrip("v").split(".")[0])
    except ValueError:
        return 1


#: Compose 1.29 names a service's first container PROJECT_SERVICE_1 and
#: prefixes its log lines "SERVICE_1  | "; Compose v2 (Debian 13's) says
#: PROJECT-SERVICE-1 and "SERVICE-1  | ".
SEPARATOR = "-" if _compose_major() >= 2 else "_"


def container(project: str, service: str) -> str:
    return SEPARATOR.join((project, service, "1"))


def logged(output: str, service: str, line: str) -> bool:
    """Whether C{service}'s first container logged C{line}, as either
    Compose prefixes it."""
    return re.search(r"(?m)^%s[-_]1 +\| %s$" % (re.escape(service), re.escape(line)), output) is not None


COMPOSE_FILE = """\
version: "2.4"
services:
  init:
    image: busybox
    command: sh -c "echo hello from the volume > /srv/index.html"
    volumes:
      - site:/srv
    networks: [front]
  web:
    image: busybox
    command: httpd -f -p 80 -h /srv
    depends_on:
      init:
        condition: service_completed_successfully
    volumes:
      - site:/srv:ro
    ports:
      - "127.0.0.1::80"
    networks: [front]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost/"]
      interval: 1s
      timeout: 2s
      retries: 20
  client:
    image: busybox
    command: wget -q -O- http://web/
    depends_on:
      web:
        condition: service_healthy
    networks: [front]
volumes:
  site: {}
networks:
  front:
    ipam:
      config:
        - subnet: %s
"""

#: The whole project up at once: web writes its page into the volume itself.
SELF_SERVED = """\
version: "2.4"
services:
  web:
    image: busybox
    command: sh -c "echo served by name > /srv/index.html && exec httpd -f -p 80 -h /srv"
    volumes:
      - site:/srv
    networks: [front]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/srv/index.html"]
      interval: 1s
      retries: 20
  client:
    image: busybox
    command: wget -q -O- http://web/
    depends_on:
      web:
        condition: service_healthy
    networks: [front]
volumes:
  site: {}
networks:
  front:
    ipam:
      config:
        - subnet: %s
"""


#: Two services built from their Dockerfiles by C{up --build}.
BUILT = """\
version: "2.4"
services:
  web:
    build: ./web
    networks: [front]
    stop_grace_period: 1s
  client:
    build: ./client
    depends_on:
      web:
        condition: service_healthy
    networks: [front]
networks:
  front:
    ipam:
      config:
        - subnet: %s
"""

WEB_DOCKERFILE = """\
FROM busybox
COPY index.html /srv/index.html
EXPOSE 80
HEALTHCHECK --interval=1s --retries=20 CMD wget -q -O- http://localhost/ || exit 1
CMD ["httpd", "-f", "-p", "80", "-h", "/srv"]
"""

CLIENT_DOCKERFILE = """\
FROM busybox
ENV TARGET=http://web/
CMD wget -q -O- $TARGET
"""


@pytest.fixture
def daemon(daemons, tmp_path):
    d = daemons.start("--debug")
    import_busybox(d, tmp_path)
    return d


def run_compose(daemon, directory, project, *args, check=True, env=None):
    result = subprocess.run([COMPOSE, "-p", project] + list(args), cwd=str(directory),
                            env=daemon.cli_env(extra=env), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert not check or result.returncode == 0, (result, daemon.log_text()[-4000:])
    return result


def assert_down(daemon, project, subnet, before):
    """Containers, network, volume, links and rules of the project gone."""
    assert daemon.docker("ps", "-aq").stdout == ""
    assert project not in daemon.docker("network", "ls", "--format", "{{.Name}}").stdout
    assert project not in daemon.docker("volume", "ls", "--format", "{{.Name}}").stdout
    after = host_state()
    assert subnet not in after
    assert [line for line in after.splitlines() if "veth" in line] == \
        [line for line in before.splitlines() if "veth" in line]


def test_web_client_named_network_volume_and_healthy_dependency(daemon, tmp_path):
    project, before = "cp" + TAG, host_state()
    subnet = "10.%d.%d.0/24" % (230, int(TAG[:2], 16))
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE % subnet)

    def compose(*args, check=True):
        return run_compose(daemon, tmp_path, project, *args, check=check)

    try:
        # The client's up starts init, then web, and waits for web's health.
        result = compose("up", "--no-color", "--exit-code-from", "client", "client")
        assert logged(result.stdout, "client", "hello from the volume"), result
        names = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout
        assert container(project, "client") + " Exited (0)" in names
        assert container(project, "init") + " Exited (0)" in names
        assert daemon.docker("inspect", "--format", "{{.State.Health.Status}}",
                             container(project, "web")).stdout == "healthy\n"
        port = compose("port", "web", "80").stdout.strip()
        assert port.startswith("127.0.0.1:"), port
        with urllib.request.urlopen("http://%s/" % port, timeout=10) as resp:
            assert resp.read() == b"hello from the volume\n"
        assert (project + "_front") in daemon.docker("network", "ls", "--format", "{{.Name}}").stdout
        assert (project + "_site") in daemon.docker("volume", "ls", "--format", "{{.Name}}").stdout
    finally:
        down = compose("down", "-v", check=False)
    assert down.returncode == 0, (down, daemon.log_text()[-4000:])
    assert_down(daemon, project, subnet, before)


def test_up_abort_on_container_exit_with_the_exit_code_of_the_client(daemon, tmp_path):
    project, before = "cq" + TAG, host_state()
    subnet = "10.%d.%d.0/24" % (231, int(TAG[:2], 16))
    (tmp_path / "docker-compose.yml").write_text(SELF_SERVED % subnet)
    try:
        result = run_compose(daemon, tmp_path, project, "up", "--no-color", "--abort-on-container-exit",
                             "--exit-code-from", "client")
        assert logged(result.stdout, "client", "served by name"), result
        assert "Aborting on container exit..." in result.stdout
        # The abort stopped web; its volume and network stay until down.
        assert daemon.docker("inspect", "--format", "{{.State.Running}}",
                             container(project, "web")).stdout == "false\n"
        assert (project + "_site") in daemon.docker("volume", "ls", "--format", "{{.Name}}").stdout
    finally:
        down = run_compose(daemon, tmp_path, project, "down", "-v", check=False)
    assert down.returncode == 0, (down, daemon.log_text()[-4000:])
    assert_down(daemon, project, subnet, before)


def test_up_build_of_two_services(daemon, tmp_path):
    """C{up --build} with the classic builder (DOCKER_BUILDKIT=0, as a user
    sets it where BuildKit would be the default), then the built images
    run: the client reaches the built web by name once it is healthy."""
    project, before = "cb" + TAG, host_state()
    subnet = "10.%d.%d.0/24" % (232, int(TAG[:2], 16))
    (tmp_path / "docker-compose.yml").write_text(BUILT % subnet)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text(WEB_DOCKERFILE)
    (tmp_path / "web" / "index.html").write_text("built and served\n")
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "Dockerfile").write_text(CLIENT_DOCKERFILE)
    env = {"DOCKER_BUILDKIT": "0"}
    try:
        result = run_compose(daemon, tmp_path, project, "up", "--build", "--no-color",
                             "--exit-code-from", "client", "client", env=env)
        assert logged(result.stdout, "client", "built and served"), result
        assert "Successfully built" in result.stdout + result.stderr, result
        images = daemon.docker("images", "--format", "{{.Repository}}").stdout.split()
        assert {project + SEPARATOR + "web", project + SEPARATOR + "client"} <= set(images), images
        config = daemon.docker_json("image", "inspect", project + SEPARATOR + "web")["Config"]
        assert config["Healthcheck"]["Test"][0] == "CMD-SHELL"
    finally:
        down = run_compose(daemon, tmp_path, project, "down", "-v", "--rmi", "local",
                           check=False, env=env)
    assert down.returncode == 0, (down, daemon.log_text()[-4000:])
    assert_down(daemon, project, subnet, before)
    images = daemon.docker("images", "--format", "{{.Repository}}").stdout.split()
    assert project + SEPARATOR + "web" not in images and project + SEPARATOR + "client" not in images
