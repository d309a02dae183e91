"""Request bodies decoded as Go decodes them (server/godecode.py with the
table of routers/types.py): a value of the wrong type is a 400 with the
message Go's decoder gives (dockerd 20.10's words, asked side by side),
and a body that does not fit is never stored."""

import pytest

from .memory import API

GO = "invalid JSON: json: cannot unmarshal "

CREATE = [
    ('{"Image":"busybox","Cmd":123}',
     "number into Go struct field ContainerConfigWrapper.Cmd of type string"),
    ('{"Image":"busybox","Entrypoint":"sh","Cmd":["a",1]}',
     "array into Go struct field ContainerConfigWrapper.Cmd of type string"),
    ('{"Image":1}', "number into Go struct field ContainerConfigWrapper.Image of type string"),
    ('{"Image":"busybox","HostConfig":{"PidsLimit":"AAA"}}',
     "string into Go struct field HostConfig.HostConfig.PidsLimit of type int64"),
    ('{"Image":"busybox","HostConfig":{"CpuShares":[null,null]}}',
     "array into Go struct field HostConfig.HostConfig.CpuShares of type int64"),
    ('{"Image":"busybox","HostConfig":{"RestartPolicy":"AAA"}}',
     "string into Go struct field HostConfig.HostConfig.RestartPolicy of type container.RestartPolicy"),
    ('{"Image":"busybox","HostConfig":{"RestartPolicy":{"MaximumRetryCount":"x"}}}',
     "string into Go struct field RestartPolicy.HostConfig.RestartPolicy.MaximumRetryCount of type int"),
    ('{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":1}]}}}',
     "number into Go struct field PortBinding.HostConfig.PortBindings.HostPort of type string"),
    ('{"Image":"busybox","HostConfig":{"Mounts":[{"Type":1}]}}',
     "number into Go struct field Mount.HostConfig.Mounts.Type of type mount.Type"),
    ('{"Image":"busybox","NetworkingConfig":{"EndpointsConfig":{"a":{"Aliases":"x"}}}}',
     "string into Go struct field EndpointSettings.NetworkingConfig.EndpointsConfig.Aliases of type []string"),
    ('{"Image":"busybox","HostConfig":{"LogConfig":{"Config":{"a":1}}}}',
     "number into Go struct field LogConfig.HostConfig.LogConfig.Config of type string"),
    ('{"Image":"busybox","Healthcheck":{"Interval":"1s"}}',
     "string into Go struct field HealthConfig.Healthcheck.Interval of type time.Duration"),
    ('{"Image":"busybox","Labels":{"a":1}}',
     "number into Go struct field ContainerConfigWrapper.Labels of type string"),
    ('{"Image":"busybox","ExposedPorts":{"80/tcp":1}}',
     "number into Go struct field ContainerConfigWrapper.ExposedPorts of type struct {}"),
    ('{"Image":"busybox","HostConfig":{"Memory":1.5}}',
     "number 1.5 into Go struct field HostConfig.HostConfig.Memory of type int64"),
    ('{"Image":"busybox","HostConfig":{"Memory":1e30}}',
     "number 1e30 into Go struct field HostConfig.HostConfig.Memory of type int64"),
    ('{"Image":"busybox","HostConfig":{"BlkioWeight":-1}}',
     "number -1 into Go struct field HostConfig.HostConfig.BlkioWeight of type uint16"),
    ('{"Image":"busybox","HostConfig":{"BlkioWeight":70000}}',
     "number 70000 into Go struct field HostConfig.HostConfig.BlkioWeight of type uint16"),
    ('[1]', "array into Go value of type runconfig.ContainerConfigWrapper"),
    ('{"Image":"busybox","HostConfig":[1]}',
     "array into Go struct field ContainerConfigWrapper.HostConfig of type container.HostConfig"),
    ('{"Image":"busybox","HostConfig":{"Ulimits":[{"Name":"nofile","Soft":"1"}]}}',
     "string into Go struct field Ulimit.HostConfig.Ulimits.Soft of type int64"),
    ('{"Image":"busybox","HostConfig":{"Devices":[{"PathOnHost":1}]}}',
     "number into Go struct field DeviceMapping.HostConfig.Devices.PathOnHost of type string"),
    ('{"Image":"busybox","HostConfig":{"Tmpfs":{"/a":1}}}',
     "number into Go struct field HostConfig.HostConfig.Tmpfs of type string"),
    ('{"Image":"busybox","HostConfig":{"ConsoleSize":[1,-1]}}',
     "number -1 into Go struct field HostConfig.HostConfig.ConsoleSize of type uint"),
]  # fmt: skip

UPDATE = [
    ('{"CpuShares":"AAA"}', "string into Go struct field UpdateConfig.CpuShares of type int64"),
    ('{"Memory":[null,null]}', "array into Go struct field UpdateConfig.Memory of type int64"),
    ('{"RestartPolicy":"AAA"}',
     "string into Go struct field UpdateConfig.RestartPolicy of type container.RestartPolicy"),
    ('{"RestartPolicy":{"Name":1}}',
     "number into Go struct field RestartPolicy.RestartPolicy.Name of type string"),
    ('[1]', "array into Go value of type container.UpdateConfig"),
    ('{"PidsLimit":"x"}', "string into Go struct field UpdateConfig.PidsLimit of type int64"),
    ('{"BlkioWeightDevice":[{"Path":1}]}',
     "number into Go struct field WeightDevice.BlkioWeightDevice.Path of type string"),
]  # fmt: skip


def post(api, path, body):
    return api.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})


@pytest.mark.route("POST", "/containers/create")
@pytest.mark.parametrize("body,message", CREATE)
def test_create_refuses_wrong_types_with_gos_message(body, message):
    api = API()
    answer = post(api, "/v1.41/containers/create?name=web", body)
    assert (answer.code, answer.json()) == (400, {"message": GO + message})
    # Nothing was stored: the name is free.
    assert post(api, "/v1.41/containers/create?name=web", '{"Image":"busybox"}').code == 201


@pytest.mark.route("POST", "/containers/{name:.*}/update")
@pytest.mark.parametrize("body,message", UPDATE)
def test_update_refuses_wrong_types_with_gos_message(body, message):
    api = API()
    assert post(api, "/v1.41/containers/create?name=web", '{"Image":"busybox"}').code == 201
    answer = post(api, "/v1.41/containers/web/update", body)
    assert (answer.code, answer.json()) == (400, {"message": GO + message})


def test_decoding_keeps_what_fits_as_go_leaves_it():
    from twistedock.routers import types
    from twistedock.server import godecode

    body = {
        "image": "busybox", "Cmd": "sh", "Env": ["A=1", None], "Unknown": [1],
        "HostConfig": {"memory": 1 << 26, "PidsLimit": None, "ConsoleSize": [None, 3]},
    }  # fmt: skip
    assert godecode.decode(body, types.CONTAINER_CREATE) == {
        "Image": "busybox", "Cmd": "sh", "Env": ["A=1", ""], "Unknown": [1],
        "HostConfig": {"Memory": 1 << 26, "PidsLimit": None, "ConsoleSize": [0, 3]},
    }  # fmt: skip
    assert godecode.decode(None, types.UPDATE_CONFIG) is None


def test_a_fatal_strslice_error_wins_over_an_earlier_type_error():
    # Go keeps decoding after a type error, but StrSlice's own decoder stops it.
    from twistedock.routers import types
    from twistedock.server import godecode

    with pytest.raises(godecode.DecodeError) as caught:
        godecode.decode({"Image": 1, "Cmd": 2}, types.CONTAINER_CREATE)
    assert caught.value.message == (
        "json: cannot unmarshal number into Go struct field ContainerConfigWrapper.Cmd of type string"
    )
