"""HostConfig.Devices entries that name no device, refused at start with
dockerd's words (moby's oci.DevicesFromPath over runc's DeviceFromPath)."""

import pytest

from twistedock.backend.spec.devices import devices_from_path
from twistedock.errors import InternalError


def test_an_empty_path_is_refused_with_the_lstat_error():
    # dockerd 20.10, Devices [{}]: 500, the lstat of "" failed.
    with pytest.raises(InternalError) as caught:
        devices_from_path("", "", "rwm")
    assert caught.value.message == (
        'error gathering device information while adding custom device "": no such file or directory'
    )


def test_a_missing_path_is_refused_with_the_lstat_error(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(InternalError) as caught:
        devices_from_path(missing, "/dev/x", "rwm")
    assert caught.value.message.endswith('"%s": no such file or directory' % missing)


def test_a_file_or_an_empty_directory_is_not_a_device_node(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("")
    for path in (str(regular), str(tmp_path)):
        with pytest.raises(InternalError) as caught:
            devices_from_path(path, "/dev/x", "rwm")
        assert caught.value.message.endswith('"%s": not a device node' % path)


def test_a_device_node_is_mapped():
    devices, rules = devices_from_path("/dev/null", "/dev/mynull", "rw")
    assert [(d["path"], d["type"], d["major"], d["minor"]) for d in devices] == [("/dev/mynull", "c", 1, 3)]
    assert rules == [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
