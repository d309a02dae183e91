"""
A container's /etc/resolv.conf as dockerd 20.10 writes it (libnetwork's
resolvconf package and the sandbox's setupDNS/rebuildDNS): the host's file
with its loopback resolvers filtered out, or one built from --dns,
--dns-search and --dns-option; on networks with name resolution, the
embedded server's address 127.0.0.11 in their place (the others kept as the
upstream servers it forwards to, dockerd's ExtServers). Pure functions.
"""

import re
from typing import List, Optional, Sequence

#: The embedded DNS server's address inside each container of a user network.
EMBEDDED_NAMESERVER = "127.0.0.11"

#: Where dockerd falls back to when the host's resolvers are all on loopback.
DEFAULT_IPV4 = ("8.8.8.8", "8.8.4.4")
DEFAULT_IPV6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")

_IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV6 = r"(?:[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)(?:%[^\s]+)?"
_LOCALHOST_NS = re.compile(r"(?m)^nameserver\s+(?:(?:127\.(?:[0-9]{1,3}\.){2}[0-9]{1,3})|(?:::1)$)\s*\n*")
_IPV6_NS = re.compile(r"(?m)^nameserver\s+" + _IPV6 + r"\s*\n*")
_NAMESERVER = re.compile(r"^\s*nameserver\s*((?:" + _IPV4 + r")|(?:" + _IPV6 + r"))\s*$")
_SEARCH = re.compile(r"^\s*search\s*(([^\s]+\s*)*)$")
_OPTIONS = re.compile(r"^\s*options\s*(([^\s]+\s*)*)$")


def _lines(text: str) -> List[str]:
    """The lines without their comments (libnetwork's getLines)."""
    return [line.split("#", 1)[0] for line in text.split("\n")]


def nameservers(text: str, family: Optional[int] = None) -> List[str]:
    """The nameserver addresses (C{family} 4 or 6 only, else all)."""
    out = []
    for line in _lines(text):
        match = _NAMESERVER.match(line)
        if not match:
            continue
        address = match.group(1)
        if family is None or (family == 6) == (":" in address):
            out.append(address)
    return out


def search_domains(text: str) -> List[str]:
    """The last search line's domains (as GetSearchDomains)."""
    domains: List[str] = []
    for line in _lines(text):
        match = _SEARCH.match(line)
        if match:
            domains = match.group(1).split()
    return domains


def options(text: str) -> List[str]:
    """The last options line's options (as GetOptions)."""
    found: List[str] = []
    for line in _lines(text):
        match = _OPTIONS.match(line)
        if match:
            found = match.group(1).split()
    return found


def build(dns: Sequence[str], search: Sequence[str], opts: Sequence[str]) -> str:
    """resolvconf.Build: search, nameservers, options ("." searches nothing)."""
    text = ""
    if search and " ".join(search).strip(" ") != ".":
        text += "search " + " ".join(search) + "\n"
    for server in dns:
        text += "nameserver " + server + "\n"
    if opts and " ".join(opts).strip(" "):
        text += "options " + " ".join(opts) + "\n"
    return text


def filter_resolvers(text: str, ipv6: bool) -> str:
    """FilterResolvDNS: the host's loopback resolvers removed (and its IPv6
    ones without C{ipv6}); Google's when none is left."""
    cleaned = _LOCALHOST_NS.sub("", text)
    if not ipv6:
        cleaned = _IPV6_NS.sub("", cleaned)
    if not nameservers(cleaned):
        defaults = list(DEFAULT_IPV4) + (list(DEFAULT_IPV6) if ipv6 else [])
        cleaned += "\n" + "\n".join("nameserver " + d for d in defaults)
        if not ipv6:
            cleaned += "\n"
    return cleaned


def container_file(host: str, dns: Sequence[str] = (), search: Sequence[str] = (),
                   opts: Sequence[str] = ()) -> str:
    """setupDNS (then updateDNS without IPv6): the container's file from the
    host's text and the container's --dns, --dns-search, --dns-option."""
    if dns or search or opts:
        return build(list(dns) or nameservers(host), list(search) or search_domains(host),
                     list(opts) or options(host))
    return filter_resolvers(host, False)


def embedded_file(container: str) -> str:
    """rebuildDNS: the container's file (L{container_file}) pointed at the
    embedded server, its IPv6 resolvers kept, ndots:0 added unless the
    options set ndots."""
    opts = options(container)
    if not any("ndots" in option for option in opts):
        opts = opts + ["ndots:0"]
    return build([EMBEDDED_NAMESERVER] + nameservers(container, 6), search_domains(container), opts)


def external_servers(host: str, dns: Sequence[str] = ()) -> List[str]:
    """The upstream IPv4 resolvers the embedded server forwards to: --dns,
    else the host's. The host's loopback resolvers are kept: the server
    forwards from the host's namespace, where they answer (as dockerd 25's
    host-loopback forwarding)."""
    if dns:
        return [d for d in dns if ":" not in d]
    return nameservers(host, 4)
