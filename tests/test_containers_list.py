"""
The container backend's views in process, over a fake runtime: `docker ps`
with its filters, `docker container prune`, counts and disk usage.
"""

import os

import pytest

from twistedock.errors import InvalidParameter, NotFound
from twistedock.filters import Filters

from .fake_runtime import START, World, failure_of, run


@pytest.fixture
def world(tmp_path):
    """Five containers created a second apart, oldest first: exited 0
    (front), running (back, prod), exited 3, created, paused; all started at
    START + 5, now is START + 9."""
    w = World(tmp_path)
    w.ids = {}
    for name, labels in (
        ("exited0", {"tier": "front"}),
        ("running", {"tier": "back", "env": "prod"}),
        ("exited3", {}),
        ("fresh", {"tier": "front", "env": "dev"}),
        ("frozen", {}),
    ):
        w.ids[name] = w.create(name, Labels=labels)
        w.clock.advance(1)
    for name in ("exited0", "running", "exited3", "frozen"):
        run(w.backend.start(name))
    w.runtime.exit(w.ids["exited0"], 0)
    w.runtime.exit(w.ids["exited3"], 3)
    run(w.backend.pause("frozen"))
    w.clock.advance(4)
    return w


def names(world, all=False, limit=0, **filters):
    listed = run(world.backend.list(all, limit, False, Filters(filters), "1.41"))
    return [entry["Names"][0].lstrip("/") for entry in listed]


def test_running_ones_by_default_newest_first(world):
    assert names(world) == ["frozen", "running"]
    assert names(world, all=True) == ["frozen", "fresh", "exited3", "running", "exited0"]


def test_the_summary(world):
    (entry,) = run(world.backend.list(False, 0, False, Filters({"name": ["^/running$"]}), "1.41"))
    assert entry["Id"] == world.ids["running"]
    assert entry["Image"] == "busybox" and entry["ImageID"] == world.image_id
    assert entry["Command"] == "sh"
    assert entry["Created"] == START + 1
    assert entry["Labels"] == {"tier": "back", "env": "prod"}
    assert (entry["State"], entry["Status"]) == ("running", "Up 4 seconds")
    assert entry["HostConfig"] == {"NetworkMode": "default"}
    assert list(entry["NetworkSettings"]["Networks"]) == ["bridge"]
    statuses = {
        e["Names"][0]: (e["State"], e["Status"])
        for e in run(world.backend.list(True, 0, False, Filters(), "1.41"))
    }
    assert statuses["/exited3"] == ("exited", "Exited (3) 4 seconds ago")
    assert statuses["/fresh"] == ("created", "Created")
    assert statuses["/frozen"] == ("paused", "Up 4 seconds (Paused)")


def test_sizes_when_asked(world):
    c = world.backend.get("exited0")
    with open(os.path.join(world.backend.overlay(c)["UpperDir"], "new"), "wb") as f:
        f.write(b"x" * 100)
    (entry,) = run(world.backend.list(True, 0, True, Filters({"name": ["exited0"]}), "1.41"))
    image_size = world.images.get("busybox").size
    assert (entry["SizeRw"], entry["SizeRootFs"]) == (100, 100 + image_size)
    doc = run(world.backend.inspect("exited0", True, "1.41"))
    assert (doc["SizeRw"], doc["SizeRootFs"]) == (100, 100 + image_size)


def test_status_filter(world):
    assert names(world, status=["exited"]) == ["exited3", "exited0"]
    assert names(world, status=["created", "paused"]) == ["frozen", "fresh"]
    assert names(world, status=["running"]) == ["running"]
    error = failure_of(world.backend.list(False, 0, False, Filters({"status": ["gone"]}), "1.41"))
    assert isinstance(error, InvalidParameter) and str(error) == "Invalid filter 'status=gone'"


def test_exited_filter(world):
    assert names(world, exited=["3"]) == ["exited3"]
    assert names(world, exited=["0", "3"]) == ["exited3", "exited0"]
    # A created container has exit code 0 but did not exit.
    assert names(world, all=True, exited=["0"]) == ["exited0"]
    error = failure_of(world.backend.list(False, 0, False, Filters({"exited": ["x"]}), "1.41"))
    assert str(error) == "invalid filter 'exited=x'"


def test_name_and_id_filters(world):
    assert names(world, all=True, name=["exited"]) == ["exited3", "exited0"]
    assert names(world, all=True, name=["^/fr"]) == ["frozen", "fresh"]
    assert names(world, all=True, name=["fresh"]) == ["fresh"]
    assert names(world, all=True, id=[world.ids["exited3"][:10]]) == ["exited3"]
    assert names(world, all=True, id=["nothing"]) == []


def test_label_filter(world):
    assert names(world, all=True, label=["tier"]) == ["fresh", "running", "exited0"]
    assert names(world, all=True, label=["tier=front"]) == ["fresh", "exited0"]
    assert names(world, all=True, label=["tier=front", "env=dev"]) == ["fresh"]
    assert names(world, all=True, label=["env=staging"]) == []


def test_ancestor_filter(world):
    assert len(names(world, all=True, ancestor=["busybox"])) == 5
    assert len(names(world, all=True, ancestor=[world.image_id])) == 5
    assert len(names(world, all=True, ancestor=["busybox:latest"])) == 5
    assert names(world, all=True, ancestor=["alpine"]) == []


def test_before_and_since(world):
    assert names(world, all=True, before=["exited3"]) == ["running", "exited0"]
    assert names(world, all=True, since=["exited3"]) == ["frozen", "fresh"]
    assert names(world, all=True, since=["exited0"], before=["frozen"]) == ["fresh", "exited3", "running"]
    error = failure_of(world.backend.list(True, 0, False, Filters({"before": ["nope"]}), "1.41"))
    assert isinstance(error, NotFound) and str(error) == "No such container: nope"


def test_limit_implies_all(world):
    assert names(world, limit=2) == ["frozen", "fresh"]
    assert names(world, limit=3, status=["exited"]) == ["exited3", "exited0"]


def test_unknown_filters_and_filters_nothing_matches(world):
    error = failure_of(world.backend.list(False, 0, False, Filters({"colour": ["red"]}), "1.41"))
    assert isinstance(error, InvalidParameter) and str(error) == "Invalid filter 'colour'"
    assert names(world, all=True, network=["bridge"]) == ["frozen", "fresh", "exited3", "running", "exited0"]
    assert names(world, all=True, network=["host"]) == []
    assert names(world, all=True, health=["healthy"]) == []
    assert len(names(world, all=True, health=["none"])) == 5
    error = failure_of(world.backend.list(False, 0, False, Filters({"health": ["ill"]}), "1.41"))
    assert str(error) == "Unrecognised filter value for health: ill"


# -- prune -----------------------------------------------------------------------------


def prune(world, **filters):
    return run(world.backend.prune(Filters(filters)))


def test_prune_removes_what_does_not_run(world):
    c = world.backend.get("exited3")
    with open(os.path.join(world.backend.overlay(c)["UpperDir"], "data"), "wb") as f:
        f.write(b"y" * 1000)
    answer = prune(world)
    assert sorted(answer["ContainersDeleted"]) == sorted(world.ids[n] for n in ("exited0", "exited3", "fresh"))
    assert answer["SpaceReclaimed"] == 1000
    assert names(world, all=True) == ["frozen", "running"]
    prune_event = world.events._history[-1]
    assert (prune_event.action, prune_event.actor.attributes) == ("prune", {"reclaimed": "1000"})
    assert prune(world) == {"ContainersDeleted": None, "SpaceReclaimed": 0}


def test_prune_until(world):
    # Created before START + 2: exited0 (START) and running (START + 1, running).
    answer = prune(world, until=[str(START + 2)])
    assert answer["ContainersDeleted"] == [world.ids["exited0"]]
    # A duration before now (START + 9): created before START + 4.
    answer = prune(world, until=["5s"])
    assert sorted(answer["ContainersDeleted"]) == sorted([world.ids["exited3"], world.ids["fresh"]])
    error = failure_of(world.backend.prune(Filters({"until": ["tomorrow"]})))
    assert isinstance(error, InvalidParameter) and str(error) == 'failed to parse value as time or duration: "tomorrow"'


def test_prune_label_filters(world):
    assert prune(world, label=["tier=front"])["ContainersDeleted"] == [world.ids["exited0"], world.ids["fresh"]]
    assert prune(world, **{"label!": ["tier"]})["ContainersDeleted"] == [world.ids["exited3"]]
    error = failure_of(world.backend.prune(Filters({"name": ["x"]})))
    assert isinstance(error, InvalidParameter) and str(error) == "Invalid filter 'name'"


def test_prune_label_not(tmp_path):
    w = World(tmp_path)
    keep = w.create("keep", Labels={"keep": "yes"})
    other = w.create("other", Labels={"keep": "no"})
    bare = w.create("bare")
    answer = prune(w, **{"label!": ["keep=yes"]})
    assert sorted(answer["ContainersDeleted"]) == sorted([other, bare])
    assert w.backend.by_id(keep) is not None


# -- counts and disk usage -------------------------------------------------------------


def test_counts_and_disk_usage(world):
    assert world.backend.counts() == {
        "Containers": 5, "ContainersRunning": 1, "ContainersPaused": 1, "ContainersStopped": 3,
    }
    assert run(world.backend.disk_usage({"image"})) == {}
    usage = run(world.backend.disk_usage({"container"}))
    assert [e["Names"][0] for e in usage["Containers"]] == ["/frozen", "/fresh", "/exited3", "/running", "/exited0"]
    # Zero sizes are left out, as dockerd's omitempty leaves them.
    assert all("SizeRw" not in e for e in usage["Containers"])
