# The `twistd dockerd` dropin.  twistd imports every dropin it finds to list
# its plugins, so this one names twistedock's module without importing it;
# twistedock.tap.DOCKERD is the same plugin for the `twistedock` command.
from twisted.application.service import ServiceMaker

dockerd = ServiceMaker(
    "twistedock dockerd",
    "twistedock.tap",
    "A Docker-Engine-compatible container daemon",
    "dockerd",
)
