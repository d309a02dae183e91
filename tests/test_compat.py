"""docs/COMPAT.md is what scripts/compat.py generates, and the spec is covered.

The spec is not in the repository: TWISTEDOCK_API_SPEC names it (.ci/run
finds it and sets it, so CI always runs these), else scripts/compat.py's
default beside the checkout; only without either do they skip.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def load_compat():
    spec = importlib.util.spec_from_file_location("compat", REPO / "scripts" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compat = load_compat()


@pytest.fixture(scope="module")
def spec_path() -> Path:
    given = os.environ.get("TWISTEDOCK_API_SPEC")
    if given:
        assert Path(given).is_file(), "TWISTEDOCK_API_SPEC=%s: no such file" % (given,)
        return Path(given)
    if not compat.DEFAULT_SPEC.is_file():
        pytest.skip("Engine API spec not found at %s (set TWISTEDOCK_API_SPEC)" % (compat.DEFAULT_SPEC,))
    return compat.DEFAULT_SPEC


@pytest.fixture(scope="module")
def model(spec_path):
    return compat.build_model(REPO, spec_path)


def test_compat_page_is_current(spec_path):
    expected = compat.generate(REPO, spec_path)
    current = (REPO / "docs" / "COMPAT.md").read_text(encoding="utf-8")
    assert current == expected, "docs/COMPAT.md is stale: run `python scripts/compat.py`"


def test_every_spec_operation_has_a_route(model):
    assert model.spec_version == "1.56"
    assert model.missing == []


def test_every_route_mark_names_a_route(model):
    assert model.unknown_marks == []


def test_spec_readers_agree(spec_path):
    """The fallback reader (no PyYAML) sees what PyYAML sees."""
    assert yaml.__name__ == "yaml"  # a test dependency: setup.cfg's test extras
    text = spec_path.read_text(encoding="utf-8")
    version, operations = compat.spec_operations_plain(text)
    assert (version, operations) == compat.spec_operations_yaml(text)
    assert len(operations) == 108


def test_template_normalisation():
    assert compat.normalise("/containers/{name:.*}/json") == "/containers/{}/json"
    assert compat.normalise("/networks/{id:.+}") == "/networks/{}"
    assert compat.normalise("/x/{n:[0-9]{2}}/y") == "/x/{}/y"
    assert compat.normalise("/networks/") == "/networks/"


def test_marks_found_on_functions_classes_and_modules(tmp_path):
    (tmp_path / "tests" / "sub").mkdir(parents=True)
    (tmp_path / "tests" / "sub" / "test_sample.py").write_text(
        "import pytest\n"
        "from pytest import mark\n"
        "pytestmark = [pytest.mark.route('GET', '/_ping'), pytest.mark.slow]\n"
        "@pytest.mark.route('get', '/info')\n"
        "def test_one(): pass\n"
        "def helper(): pass\n"
        "@mark.route('POST', '/auth')\n"
        "class TestGroup:\n"
        "    pytestmark = pytest.mark.route('GET', '/version')\n"
        "    def test_two(self): pass\n"
        "    @pytest.mark.route('GET', path)\n"
        "    async def test_three(self): pass\n"
        "class Helper:\n"
        "    @pytest.mark.route('GET', '/events')\n"
        "    def test_ignored(self): pass\n"
    )
    (tmp_path / "tests" / "helpers.py").write_text(
        "import pytest\n@pytest.mark.route('GET', '/x')\ndef test_not_collected(): pass\n"
    )
    found = {(t, m, p) for t, _, m, p in compat.scan_tests(tmp_path)}
    one = "tests/sub/test_sample.py::test_one"
    two = "tests/sub/test_sample.py::TestGroup::test_two"
    three = "tests/sub/test_sample.py::TestGroup::test_three"
    assert found == {
        (one, "GET", "/_ping"),
        (one, "GET", "/info"),
        (two, "GET", "/_ping"),
        (two, "POST", "/auth"),
        (two, "GET", "/version"),
        (three, "GET", "/_ping"),
        (three, "POST", "/auth"),
        (three, "GET", "/version"),
        (three, "GET", None),
    }


def test_check_fails_on_a_stale_page(spec_path, tmp_path, capsys):
    page = tmp_path / "COMPAT.md"
    page.write_text("stale\n")
    assert compat.main(["--spec", str(spec_path), "--output", str(page), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert compat.main(["--spec", str(spec_path), "--output", str(page)]) == 0
    assert compat.main(["--spec", str(spec_path), "--output", str(page), "--check"]) == 0
