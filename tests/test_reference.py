"""Image references as distribution/reference parses and shows them
(twistedock.reference)."""

import pytest

from twistedock.errors import InvalidParameter
from twistedock.reference import parse_any_reference, parse_normalized_named


def test_references():
    assert str(parse_normalized_named("busybox")) == "docker.io/library/busybox"
    assert parse_normalized_named("busybox").tag_name_only().familiar_string() == "busybox:latest"
    assert str(parse_normalized_named("localhost:5000/a/b:t")) == "localhost:5000/a/b:t"
    assert parse_normalized_named("index.docker.io/user/app").familiar_string() == "user/app"
    assert parse_any_reference("a" * 64).digest == "sha256:" + "a" * 64
    with pytest.raises(InvalidParameter) as caught:
        parse_normalized_named("a:b:c")
    assert str(caught.value) == "invalid reference format"
