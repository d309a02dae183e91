"""
Registry credentials: the C{X-Registry-Auth} header (base64url JSON) and
C{POST /auth}'s body, and C{WWW-Authenticate} challenges.
"""

import base64
import json
import re
from typing import Dict, List, Tuple

import attr


@attr.s(frozen=True, auto_attribs=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    auth: str = ""
    server_address: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @property
    def has_basic(self) -> bool:
        return bool(self.username or self.password)


def from_json(doc) -> AuthConfig:
    """An AuthConfig document (its keys case-insensitive, as Go's decoder);
    C{auth} is C{base64(user:password)}."""
    if not isinstance(doc, dict):
        return AuthConfig()
    lowered = {str(k).lower(): v for k, v in doc.items()}

    def text(key: str) -> str:
        value = lowered.get(key)
        return value if isinstance(value, str) else ""

    username, password = text("username"), text("password")
    encoded = text("auth")
    if encoded and not username:
        try:
            username, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            pass
    return AuthConfig(
        username=username,
        password=password,
        auth=encoded,
        server_address=text("serveraddress"),
        identity_token=text("identitytoken"),
        registry_token=text("registrytoken"),
    )


def decode_header(value: str) -> AuthConfig:
    """registry.DecodeAuthConfig: base64url JSON, padded or not; a header
    that does not decode means no credentials (as dockerd 20.10)."""
    if not value:
        return AuthConfig()
    raw = value.strip()
    raw += "=" * (-len(raw) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            return from_json(json.loads(decode(raw).decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            continue
    return AuthConfig()


_PARAM = re.compile(r'\s*([A-Za-z0-9_.\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenges(headers: List[str]) -> List[Tuple[str, Dict[str, str]]]:
    """C{WWW-Authenticate} values: C{[(scheme in lower case, params)]}."""
    out: List[Tuple[str, Dict[str, str]]] = []
    for header in headers:
        rest = header.strip()
        while rest:
            scheme, _, rest = rest.partition(" ")
            params: Dict[str, str] = {}
            while True:
                match = _PARAM.match(rest)
                if match is None:
                    break
                params[match.group(1).lower()] = (
                    re.sub(r"\\(.)", r"\1", match.group(2)) if match.group(2) is not None else match.group(3)
                )
                rest = rest[match.end():]
            out.append((scheme.lower(), params))
            rest = rest.strip()
            if not params:
                break
    return out


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
