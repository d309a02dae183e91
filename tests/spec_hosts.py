"""The host the spec tests build for: the reference dockerd's."""

from twistedock.backend import spec

#: A host as the reference dockerd's: 2 CPUs, cgroup v1, no blkio weight.
HOST = spec.SysInfo(
    ncpu=2,
    cpus="0-1",
    mems="0",
    blkio_weight=False,
    blkio_weight_device=False,
    own_capabilities=None,
    last_cap=40,
    kernel="6.1.0",
    machine="x86_64",
)
