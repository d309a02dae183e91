"""The implementations behind the routers' backend interfaces."""
