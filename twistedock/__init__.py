"""twistedock: a Docker-Engine-compatible container daemon on Twisted."""

__version__ = "0.1.0"
