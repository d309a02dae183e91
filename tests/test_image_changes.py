"""The Dockerfile instructions of `docker import --change` and `docker
commit --change` (twistedock.backend.images.changes)."""

from twistedock.backend.images.changes import apply_changes
from twistedock.backend.images.config import empty_container_config


def test_changes_as_dockerd_applies_them():
    config = apply_changes(
        empty_container_config(),
        [
            'ENV A=1 B="x y"',
            "ENV C hello  $A world",
            "CMD echo $A",
            'ENTRYPOINT ["/bin/sh", "-c"]',
            "EXPOSE 80 90/udp 8000-8001",
            'LABEL a=b "c d"=e x=$A',
            "USER $A:2",
            'VOLUME ["/data", "/x"]',
            "VOLUME /v1 /v2",
            "WORKDIR rel",
            "WORKDIR sub/$A",
            "onbuild run echo hi",
            'HEALTHCHECK --interval=5s --retries=2 CMD ["true"]',
            "ENV D=${A:-def} E=${Z:-def} F=${A:+alt}",
        ],
    )
    assert config["Env"] == ["A=1", "B=x y", "C=hello  1 world", "D=1", "E=def", "F=alt"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo $A"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert config["Labels"] == {"a": "b", "c d": "e", "x": "1"}
    assert config["User"] == "1:2"
    assert config["Volumes"] == {"/data": {}, "/x": {}, "/v1": {}, "/v2": {}}
    assert config["WorkingDir"] == "/rel/sub/1"
    assert config["OnBuild"] == ["run echo hi"]
    assert config["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert apply_changes(empty_container_config(), ["CMD"])["Cmd"] == ["/bin/sh", "-c"]
    assert apply_changes(empty_container_config(), ["HEALTHCHECK NONE"])["Healthcheck"] == {
        "Test": ["NONE"]
    }
    assert apply_changes(empty_container_config(), ["USER x \\", "y"])["User"] == "x y"
    config = apply_changes(empty_container_config(), ['CMD ["b"]', 'ENTRYPOINT ["a"]'])
    assert (config["Cmd"], config["Entrypoint"]) == (["b"], ["a"])
    config = apply_changes(empty_container_config(), ['ENTRYPOINT ["a"]'])
    assert config["Cmd"] is None
