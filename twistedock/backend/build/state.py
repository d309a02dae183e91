"""
What the classic builder's steps share: a stage's state as the steps
change it, the error a failing step ends the build with, and dockerd's
defaults.
"""

import copy
from typing import Dict, Optional

import attr

from ...errors import DockerError

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Build args every Dockerfile may use without declaring them (moby's
#: builtinAllowedBuildArgs); they stay out of the image's history.
BUILTIN_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)


class BuildFailed(DockerError):
    """A step failed: the stream's errorDetail (with C{code} for a RUN)."""

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code


@attr.s(auto_attribs=True)
class StageState:
    image_id: str
    config: dict
    base: dict
    stage_name: str
    declared: Dict[str, Optional[str]] = attr.ib(factory=dict)
    cmd_set: bool = False
    author: str = ""


def image_config(config: dict) -> dict:
    out = copy.deepcopy(config)
    out.pop("AttachStdout", None)
    out.pop("AttachStderr", None)
    return out
