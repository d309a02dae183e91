"""Image references in the short forms dockerd shows (distribution/reference)."""

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_REPO_PREFIX = "library/"


def familiar_name(reference: str) -> str:
    """The repository of C{reference} without tag, digest and default domain."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            if name.startswith(OFFICIAL_REPO_PREFIX) and name.count("/") == 1:
                name = name[len(OFFICIAL_REPO_PREFIX) :]
            break
    return name
