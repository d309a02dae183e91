from twistedock import containerconfig
from twistedock.routers.types import CONFIG_FIELDS


def test_the_go_types_and_the_json_table_name_the_same_fields_in_order():
    assert tuple(CONFIG_FIELDS) == containerconfig.ORDER


def test_empty_leaves_the_omitempty_fields_out():
    empty = containerconfig.empty()
    assert tuple(empty) == tuple(n for n in containerconfig.ORDER if n not in containerconfig.OMITEMPTY)
    assert empty["Env"] is None and empty["Tty"] is False and "Healthcheck" not in empty
