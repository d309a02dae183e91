"""Go's formats, as dockerd's answers carry them."""

import stat

import pytest

from twistedock import golang


def test_file_modes():
    assert golang.file_mode(stat.S_IFDIR | 0o755) == 2147484141
    assert golang.file_mode(stat.S_IFLNK | 0o777) == 134218239
    assert golang.file_mode(stat.S_IFREG | 0o644) == 420
    assert golang.file_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert golang.file_mode(stat.S_IFDIR | 0o1777) == (1 << 31) | (1 << 20) | 0o777
    assert golang.file_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755


def test_times():
    ns = 1_700_000_000_500_000_000
    assert golang.rfc3339_nano(ns) == "2023-11-14T22:13:20.5Z"
    assert golang.rfc3339_nano(0) == "1970-01-01T00:00:00Z"
    assert golang.rfc3339_nano_fixed(ns) == "2023-11-14T22:13:20.500000000Z"
    assert golang.json_time(0) == golang.json_time(None) == "0001-01-01T00:00:00Z"
    assert golang.json_time(ns) == "2023-11-14T22:13:20.5Z"
    assert golang.parse_rfc3339("2023-11-14T23:13:20.5+01:00") == ns
    assert golang.parse_rfc3339("2023-11-14") is None
    assert golang.seconds_to_ns(1.25) == 1_250_000_000


def test_durations():
    assert golang.parse_duration("1h2m3.5s") == 3_723_500_000_000
    assert golang.parse_duration("-1.5ms") == -1_500_000
    assert golang.parse_duration("0") == 0
    with pytest.raises(ValueError, match='missing unit in duration "10"'):
        golang.parse_duration("10")
    with pytest.raises(ValueError, match='invalid duration "1x"'):
        golang.parse_duration("1x")
    assert golang.human_duration(0.5) == "Less than a second"
    assert golang.human_duration(59) == "59 seconds"
    assert golang.human_duration(90) == "About a minute"
    assert golang.human_duration(3 * 3600) == "3 hours"
    assert golang.human_duration(10 * 86400) == "10 days"


def test_paths():
    assert golang.clean("") == "."
    assert golang.clean("//a/./b/../c/") == "/a/c"
    assert golang.base("/data/") == "data"
    assert golang.base("/") == "/"
    assert golang.base("") == "."
    assert golang.split("/a/b") == ("/a/", "b")
    assert golang.path_match("*", "web") and not golang.path_match("*", "team/web")
    assert golang.path_match("team/[a-c]*", "team/box")
    with pytest.raises(golang.BadPattern):
        golang.path_match("[", "x")


def test_quote_is_strconv_quote():
    assert golang.quote('a "b"\\') == '"a \\"b\\"\\\\"'
    assert golang.quote("tab\there\n") == '"tab\\there\\n"'
    assert golang.quote("\x01\x7f") == '"\\x01\\x7f"'
    assert golang.quote("caf\u00e9 \u2028") == '"caf\u00e9 \\u2028"'
    assert golang.unquote_body('a \\"b\\" \\x41\\n') == 'a "b" A\n'


def test_numbers_json_and_arch():
    assert golang.atoi("-12") == -12
    assert golang.atoi("1.5") is None
    assert golang.atoi(str(2**63)) is None
    assert golang.json_marshal({"a": "<&>"}) == b'{"a":"\\u003c\\u0026\\u003e"}'
    assert golang.goarch("x86_64") == "amd64"
    assert golang.goarch("aarch64") == "arm64"
    assert golang.goarch("mips") == "mips"
