"""docker rmi and docker image prune through the image router and the
store (twistedock.backend.images.delete)."""

import hashlib
import json
import os
from urllib.parse import quote

import pytest

from .test_images import ROOTFS_DIFF_ID, ImageAPI, layer_dirs, make_tar, run


@pytest.fixture
def api(tmp_path):
    return ImageAPI(tmp_path / "root")

# -- delete -----------------------------------------------------------------------


@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_delete_untags_then_deletes(api):
    image_id = api.imported(repo="del", tag="a")
    api.request("POST", "/images/del:a/tag?repo=del&tag=b")
    api.request("POST", "/images/del:a/tag?repo=other")
    api.system.events._history.clear()
    answer = api.request("DELETE", "/images/" + image_id[7:19])
    assert answer.code == 409
    assert answer.json() == {
        "message": "conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories"
        % (image_id[7:19],)
    }
    assert api.request("DELETE", "/images/del:a").json() == [{"Untagged": "del:a"}]
    assert api.request("DELETE", "/images/other").json() == [{"Untagged": "other:latest"}]
    assert api.request("DELETE", "/images/del:b").json() == [
        {"Untagged": "del:b"},
        {"Deleted": image_id},
        {"Deleted": ROOTFS_DIFF_ID},
    ]
    assert api.events() == [
        ("untag", image_id, {"name": image_id}),
        ("untag", image_id, {"name": image_id}),
        ("untag", image_id, {"name": image_id}),
        ("delete", image_id, {"name": image_id}),
    ]
    answer = api.request("DELETE", "/images/del:b")
    assert (answer.code, answer.json()) == (404, {"message": "No such image: del:b"})
    assert layer_dirs(api.data_root) == []
    assert os.listdir(os.path.join(api.data_root, "image", "imagedb")) == []


@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_delete_by_id(api):
    image_id = api.imported(repo="one", tag="x")
    # One tag: deleting by ID untags it too.
    assert api.request("DELETE", "/images/" + image_id).json() == [
        {"Untagged": "one:x"},
        {"Deleted": image_id},
        {"Deleted": ROOTFS_DIFF_ID},
    ]
    image_id = api.imported(repo="two")
    api.request("POST", "/images/two/tag?repo=three")
    answer = api.request("DELETE", "/images/%s?force=1" % (image_id[7:],))
    assert answer.json() == [
        {"Untagged": "three:latest"},
        {"Untagged": "two:latest"},
        {"Deleted": image_id},
        {"Deleted": ROOTFS_DIFF_ID},
    ]


@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_delete_errors(api):
    for name, status, message in (
        ("nope", 404, "No such image: nope:latest"),
        ("UPPER", 400, "invalid reference format: repository name must be lowercase"),
        ("%20", 400, "image name cannot be blank"),
    ):
        answer = api.request("DELETE", "/images/" + name)
        assert (answer.code, answer.json()) == (status, {"message": message}), name


@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_delete_refused_while_containers_use_the_image(tmp_path):
    users = {}
    api = ImageAPI(tmp_path / "root", usage=lambda image_id: users.get(image_id, []))
    image_id = api.imported(repo="used")
    short = image_id[7:19]
    users[image_id] = [("c" * 64, True)]
    answer = api.request("DELETE", "/images/%s?force=1" % (image_id,))
    assert (answer.code, answer.json()) == (
        409,
        {
            "message": "conflict: unable to delete %s (cannot be forced) - image is being used by running container cccccccccccc"
            % (short,)
        },
    )
    answer = api.request("DELETE", "/images/used")
    assert (answer.code, answer.json()) == (
        409,
        {
            "message": 'conflict: unable to remove repository reference "used" (must force) - container cccccccccccc is using its referenced image %s'
            % (short,)
        },
    )
    users[image_id] = [("d" * 64, False)]
    answer = api.request("DELETE", "/images/" + image_id)
    assert (answer.code, answer.json()) == (
        409,
        {
            "message": "conflict: unable to delete %s (must be forced) - image is being used by stopped container dddddddddddd"
            % (short,)
        },
    )
    # Forced: the image goes, its layer stays for the container.
    assert api.request("DELETE", "/images/%s?force=1" % (image_id,)).json() == [
        {"Untagged": "used:latest"},
        {"Deleted": image_id},
    ]
    dirs = api.store.get_layer_dirs(image_id)
    assert dirs and os.path.isdir(dirs[0])
    answer = api.request("GET", "/images/%s/json" % (image_id,))
    assert answer.code == 404
    # Still held after a restart; gone once no container uses it.
    api.store = api.new_store()
    assert api.store.get_layer_dirs(image_id) == dirs
    users.clear()
    run(api.store.collect_garbage())
    assert layer_dirs(api.data_root) == []


@pytest.mark.route("DELETE", "/images/{name:.*}")
def test_delete_by_name_with_a_container_on_another_tag(tmp_path):
    users = {}
    api = ImageAPI(tmp_path / "root", usage=lambda image_id: users.get(image_id, []))
    image_id = api.imported(repo="multi")
    api.request("POST", "/images/multi/tag?repo=multi&tag=two")
    users[image_id] = [("e" * 64, False)]
    # Another tag remains: untagging is fine.
    assert api.request("DELETE", "/images/multi:two").json() == [{"Untagged": "multi:two"}]
    answer = api.request("DELETE", "/images/multi?force=1")
    assert answer.json() == [{"Untagged": "multi:latest"}, {"Deleted": image_id}]


# -- prune ----------------------------------------------------------------------


@pytest.mark.route("POST", "/images/prune")
def test_prune_dangling_by_default(api):
    kept = api.imported(repo="kept")
    dangling = api.imported(make_tar({"d": b"dangling"}))
    api.system.events._history.clear()
    answer = api.request("POST", "/images/prune")
    assert answer.json() == {
        "ImagesDeleted": [
            {"Deleted": dangling},
            {"Deleted": "sha256:" + hashlib.sha256(make_tar({"d": b"dangling"})).hexdigest()},
        ],
        "SpaceReclaimed": len(b"dangling"),
    }
    assert api.events() == [
        ("delete", dangling, {"name": dangling}),
        ("prune", "", {"reclaimed": str(len(b"dangling"))}),
    ]
    assert api.request("POST", "/images/prune").json() == {
        "ImagesDeleted": None,
        "SpaceReclaimed": 0,
    }
    assert api.store.get("kept").id == kept


@pytest.mark.route("POST", "/images/prune")
def test_prune_all_and_filters(tmp_path):
    users = {}
    api = ImageAPI(tmp_path / "root", usage=lambda image_id: users.get(image_id, []))
    old = api.imported(make_tar({"o": b"o"}), repo="old", changes=["LABEL keep=no"])
    used = api.imported(make_tar({"u": b"u"}), repo="used")
    new = api.imported(make_tar({"n": b"n"}), repo="new", changes=["LABEL keep=yes"])
    users[used] = [("f" * 64, False)]

    def prune(filters):
        answer = api.request("POST", "/images/prune?filters=" + quote(json.dumps(filters)))
        assert answer.code == 200, answer.body
        return [d for d in (answer.json()["ImagesDeleted"] or [])]

    assert prune({"dangling": ["false"], "label!": ["keep=yes"], "until": ["1700000001"]}) == [
        {"Untagged": "old:latest"},
        {"Deleted": old},
        {"Deleted": "sha256:" + hashlib.sha256(make_tar({"o": b"o"})).hexdigest()},
    ]
    assert prune({"dangling": ["false"], "label": ["keep=no"]}) == []
    deleted = prune({"dangling": ["false"]})
    assert {"Deleted": new} in deleted
    assert used in [i.id for i in [api.store.get(used)]]


@pytest.mark.route("POST", "/images/prune")
def test_prune_filter_errors(api):
    for filters, status, message in (
        ({"foo": ["x"]}, 400, "Invalid filter 'foo'"),
        ({"dangling": ["xyz"]}, 400, "Invalid filter 'dangling=[xyz]'"),
        ({"until": ["xyz"]}, 500, 'failed to parse value as time or duration: "xyz"'),
        ({"until": ["1h", "2h"]}, 500, "more than one until filter specified"),
    ):
        answer = api.request("POST", "/images/prune?filters=" + quote(json.dumps(filters)))
        assert (answer.code, answer.json()) == (status, {"message": message})
