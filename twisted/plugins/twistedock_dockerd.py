from twisted.application.service import ServiceMaker

dockerd = ServiceMaker(
    "twistedock dockerd",
    "twistedock.tap",
    "A Docker-Engine-compatible container daemon",
    "dockerd",
)
