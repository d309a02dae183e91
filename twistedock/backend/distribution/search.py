"""
docker search, as dockerd 20.10's registry service makes it: the term names
an index (Docker Hub's, or a host in its first component as
C{127.0.0.1:5000/foo}) and what to look for there; the index's v1 endpoint
is checked with C{GET /v1/_ping} (any answer will do; an insecure one tried
with https then http, as dockerd's validateEndpoint), except Docker Hub's;
then C{GET /v1/search?q=TERM&n=LIMIT}, its results filtered by
C{is-automated}, C{is-official} and C{stars}.  A registry that does not
serve the v1 search (CNCF distribution) answers 404: C{Unexpected status
code 404}, as dockerd says.
"""

import json
from typing import List
from urllib.parse import quote

import treq

from ...errors import InternalError, InvalidParameter
from ...filters import Filters
from .client import INDEX_SERVER, USER_AGENT, RegistryService
from .errors import transport_message

#: Filters a search takes.
ACCEPTED_FILTERS = ("is-automated", "is-official", "stars")
DEFAULT_LIMIT = 25


def _invalid(name: str, value: str) -> InvalidParameter:
    return InvalidParameter("Invalid filter '%s=%s'" % (name, value))


def _flag(filters: Filters, name: str) -> bool:
    """UniqueExactMatch of "true" or "false"; else dockerd's error (the
    values shown as Go prints a slice)."""
    values = filters.get(name)
    if values == {"true"}:
        return True
    if values == {"false"}:
        return False
    raise _invalid(name, "[%s]" % (" ".join(sorted(values)),))


def split_term(term: str):
    """splitReposSearchTerm: (index name, what to search for)."""
    parts = term.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return "docker.io", term
    return parts[0], parts[1]


async def search(service: RegistryService, term: str, limit: int, filters: Filters) -> List[dict]:
    """GET /images/search's answer: the results, filtered."""
    filters.validate(ACCEPTED_FILTERS)
    automated = _flag(filters, "is-automated") if filters.contains("is-automated") else None
    official = _flag(filters, "is-official") if filters.contains("is-official") else None
    stars = 0
    for value in filters.get("stars"):
        try:
            stars = max(stars, int(value))
        except ValueError:
            raise _invalid("stars", value)
    if limit < 1 or limit > 100:
        raise InvalidParameter("Limit %d is outside the range of [1, 100]" % (limit,))
    if "://" in term:
        raise InternalError('Invalid repository name (ex: "registry.domain.tld/myrepos")')
    index, remote = split_term(term)
    official_index = index in ("docker.io", "index.docker.io")
    if official_index:
        base, client = INDEX_SERVER, service._verified
        if remote.startswith("library/"):
            remote = remote.split("/", 1)[1]
    else:
        base, client = await _validated(service, index)
    url = "%ssearch?q=%s&n=%d" % (base, quote(remote, safe=""), limit)
    netloc = base.split("://", 1)[1].split("/", 1)[0]
    try:
        response = await client.get(url, headers={"User-Agent": USER_AGENT}, **service.timeout("request"))
        body = await treq.content(response)
    except Exception as e:
        raise InternalError(transport_message("GET", url, e, netloc))
    if response.code != 200:
        raise InternalError("Unexpected status code %d" % (response.code,))
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InternalError("Error decoding search results: %s" % (e,))
    results = []
    for result in (doc.get("results") if isinstance(doc, dict) else None) or []:
        if not isinstance(result, dict):
            continue
        entry = {
            "star_count": int(result.get("star_count") or 0),
            "is_official": bool(result.get("is_official")),
            "name": str(result.get("name") or ""),
            "is_automated": bool(result.get("is_automated")),
            "description": str(result.get("description") or ""),
        }
        if automated is not None and entry["is_automated"] != automated:
            continue
        if official is not None and entry["is_official"] != official:
            continue
        if entry["star_count"] < stars:
            continue
        results.append(entry)
    return results


async def _validated(service: RegistryService, index: str):
    """The index's v1 endpoint once a ping answers (any status): its base
    URL and HTTP client; else dockerd's "invalid registry endpoint"."""
    secure = service.is_secure(index)
    client = service._verified if secure else service._unverified
    failures = []
    for scheme in ("https", "http") if not secure else ("https",):
        base = "%s://%s/v1/" % (scheme, index)
        try:
            response = await client.get(base + "_ping", headers={"User-Agent": USER_AGENT},
                                        **service.timeout("ping"))
            await treq.content(response)
            return base, client
        except Exception as e:
            failures.append(transport_message("GET", base + "_ping", e, index))
    if secure:
        raise InternalError(
            "invalid registry endpoint %s: %s. If this private registry supports only HTTP or HTTPS "
            "with an unknown CA certificate, please add `--insecure-registry %s` to the daemon's "
            "arguments. In the case of HTTPS, if you have access to the registry's CA certificate, "
            "no need for the flag; simply place the CA certificate at /etc/docker/certs.d/%s/ca.crt"
            % ("https://%s/v1/" % index, failures[0], index, index)
        )
    raise InternalError(
        'invalid registry endpoint "http://%s/v1/". HTTPS attempt: %s. HTTP attempt: %s'
        % (index, failures[0], failures[1])
    )
