"""Networks: the store of networks and their endpoints (L{store}), address
management (L{ipam}) and the host side through netavark (L{driver})."""
