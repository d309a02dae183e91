"""
The Engine API's C{filters} argument: a JSON map from a field to the values
it may take, with the matching rules of moby's api/types/filters.
"""

import json
import re
from typing import Dict, Iterable, Mapping, Optional, Set

from .errors import InvalidParameter


class Filters:
    def __init__(self, fields: Optional[Mapping[str, Iterable[str]]] = None) -> None:
        self.fields: Dict[str, Set[str]] = {
            k: set(v) for k, v in (fields or {}).items()
        }

    @classmethod
    def from_json(cls, text: Optional[str]) -> "Filters":
        """Parse C{text}: C{{"f": {"v": true}}}, or the older C{{"f": ["v"]}}."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise InvalidParameter("invalid filter: %s" % (e,))
        if not isinstance(raw, dict):
            raise InvalidParameter("invalid filter: expected a JSON object")
        fields: Dict[str, Set[str]] = {}
        for key, values in raw.items():
            if isinstance(values, dict):
                fields[key] = {str(v) for v, on in values.items() if on}
            elif isinstance(values, list):
                fields[key] = {str(v) for v in values}
            else:
                raise InvalidParameter("invalid filter: %r must be a map or a list" % (key,))
        return cls(fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __repr__(self) -> str:
        return "Filters(%r)" % (self.fields,)

    def get(self, key: str) -> Set[str]:
        return self.fields.get(key, set())

    def contains(self, key: str) -> bool:
        return key in self.fields

    def validate(self, accepted: Iterable[str]) -> None:
        """Refuse a field the caller does not know, as dockerd does."""
        allowed = set(accepted)
        for key in self.fields:
            if key not in allowed:
                raise InvalidParameter("Invalid filter '%s'" % (key,))

    def match(self, key: str, source: str) -> bool:
        """Args.Match: one of the values, a regular expression, is found in
        C{source} (one that does not compile matches nothing)."""
        values = self.fields.get(key)
        if not values:
            return True
        for value in values:
            try:
                if re.search(value, source):
                    return True
            except re.error:
                continue
        return False

    def exact_match(self, key: str, source: str) -> bool:
        values = self.fields.get(key)
        if not values:
            return True
        return source in values

    def fuzzy_match(self, key: str, source: str) -> bool:
        """Exact, or one of the values is a prefix of C{source}."""
        if self.exact_match(key, source):
            return True
        return any(source.startswith(v) for v in self.fields[key])

    def match_kv_list(self, key: str, sources: Optional[Mapping[str, str]]) -> bool:
        """Every C{k} or C{k=v} value of C{key} is in C{sources}."""
        values = self.fields.get(key)
        if not values:
            return True
        if not sources:
            return False
        for value in values:
            name, sep, wanted = value.partition("=")
            if name not in sources:
                return False
            if sep and sources[name] != wanted:
                return False
        return True

    def get_bool_or_default(self, key: str, default: bool) -> bool:
        """Args.GetBoolOrDefault: C{key}'s one boolean value, C{default}
        when absent."""
        if not self.contains(key):
            return default
        values = self.get(key)
        false = bool(values & {"0", "false"})
        true = bool(values & {"1", "true"})
        if not values or (false and true) or (not false and not true):
            # dockerd's invalidFilter: the values as Go prints a []string.
            raise InvalidParameter(
                "Invalid filter '%s=[%s]'" % (key, " ".join(sorted(values)))
                if values
                else "Invalid filter '%s'" % (key,)
            )
        return true
