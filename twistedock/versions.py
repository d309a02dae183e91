"""API version numbers, compared numerically per dot-separated component."""

#: The highest API version served: what docker CLI 28.x and docker-py speak.
#: It is also the version of a request without a /vX.Y prefix.
MAX_API_VERSION = "1.51"

#: The lowest API version accepted by default, and the floor below which
#: errors are written as plain text.
MIN_API_VERSION = "1.24"


def _component(parts: list, index: int) -> int:
    # Go's strconv.Atoi failing yields 0: "1.x" compares as "1.0".
    if index >= len(parts):
        return 0
    try:
        return int(parts[index])
    except ValueError:
        return 0


def compare(v1: str, v2: str) -> int:
    """-1, 0 or 1 as C{v1} is lower than, equal to or higher than C{v2}."""
    if v1 == v2:
        return 0
    a, b = v1.split("."), v2.split(".")
    for i in range(max(len(a), len(b))):
        x, y = _component(a, i), _component(b, i)
        if x != y:
            return -1 if x < y else 1
    return 0


def less_than(v1: str, v2: str) -> bool:
    return compare(v1, v2) < 0


def greater_than(v1: str, v2: str) -> bool:
    return compare(v1, v2) > 0
