"""
A container's OCI runtime spec, built from an Engine API create request the
way dockerd builds it, and dockerd's checks of that request.

- L{defaults}: dockerd's constants, default mounts, devices, capabilities.
- L{sysinfo}: what the kernel offers (L{SysInfo}), probed once.
- L{validate} runs dockerd's create-time checks in dockerd's order, from the
  modules of each concern: L{resources}, L{mounts}, L{network},
  L{security}, L{capabilities}, L{signals}; L{config} merges the request's
  Config with the image's.
- L{inputs}: everything the spec needs from disk and the host, read by one
  function (L{gather_inputs}) meant to run in a thread.
- L{build}: the pure L{build_spec}, composed of small C{with_*} steps as
  moby's createSpec; L{user}, L{seccomp} and L{devices} are its parts.

Messages are dockerd 20.10's (the reference daemon) word for word; where
20.10 answered a client's mistake with a 500 this package raises
L{InvalidParameter} (400), as later dockerd does.
"""

from .build import build_spec
from .capabilities import (
    grantable_capabilities,
    known_capabilities,
    normalize_capabilities,
    tweak_capabilities,
)
from .config import entrypoint_and_args, merge_config, replace_or_append_env
from .defaults import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_NOFILE,
    DEFAULT_PATH_ENV,
    DEFAULT_READONLY_PATHS,
    DEFAULT_RUNTIMES,
    DEFAULT_SECCOMP_PROFILE,
    DEFAULT_SHM_SIZE,
    IN_CONTAINER_INIT_PATH,
    LINUX_MIN_MEMORY,
)
from .devices import host_devices
from .inputs import SpecInputs, gather_inputs, read_linux_resources
from .logconfig import LogDriverError, Rotation, log_rotation, merge_log_config, validate_log_options
from .network import parse_link
from .mounts import (
    merge_tmpfs_options,
    missing_bind_sources,
    mount_points,
    parse_bind,
    tmpfs_options_from_mount,
    validate_mount,
)
from .resources import check_resources, linux_resources
from .seccomp import load_seccomp_profile, seccomp_from_profile
from .security import SecurityOptions, parse_security_opt
from .signals import parse_signal
from .sysinfo import SysInfo, current_sysinfo, probe_sysinfo
from .user import resolve_user
from .validate import adapt_host_config, validate_create, validate_decoded, validate_name

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_NOFILE",
    "DEFAULT_PATH_ENV",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_RUNTIMES",
    "DEFAULT_SECCOMP_PROFILE",
    "DEFAULT_SHM_SIZE",
    "IN_CONTAINER_INIT_PATH",
    "LINUX_MIN_MEMORY",
    "LogDriverError",
    "Rotation",
    "SecurityOptions",
    "SpecInputs",
    "SysInfo",
    "adapt_host_config",
    "build_spec",
    "check_resources",
    "current_sysinfo",
    "entrypoint_and_args",
    "gather_inputs",
    "grantable_capabilities",
    "host_devices",
    "known_capabilities",
    "linux_resources",
    "load_seccomp_profile",
    "log_rotation",
    "merge_log_config",
    "merge_config",
    "merge_tmpfs_options",
    "missing_bind_sources",
    "mount_points",
    "normalize_capabilities",
    "parse_bind",
    "parse_security_opt",
    "parse_signal",
    "probe_sysinfo",
    "read_linux_resources",
    "replace_or_append_env",
    "resolve_user",
    "seccomp_from_profile",
    "tmpfs_options_from_mount",
    "tweak_capabilities",
    "validate_create",
    "validate_decoded",
    "parse_link",
    "validate_log_options",
    "validate_mount",
    "validate_name",
]
