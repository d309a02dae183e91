"""
The HTTP side of the daemon: route tables composed into one root resource,
middleware, request helpers and error mapping (moby's daemon/server).
"""
