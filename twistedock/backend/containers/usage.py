"""Counts and disk usage of containers for /info and /system/df."""

class UsageMixin:
    """The usage part of L{ContainerBackend}."""

    def counts(self) -> dict:
        running = sum(1 for c in self.containers.values() if c.state.running and not c.state.paused)
        paused = sum(1 for c in self.containers.values() if c.state.paused)
        return {
            "Containers": len(self.containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(self.containers) - running - paused,
        }

    async def disk_usage(self, types) -> dict:
        if "container" not in types:
            return {}
        now = self.now()
        listed = []
        for c in sorted(self.containers.values(), key=lambda c: c.created, reverse=True):
            listed.append(c.summary(self._image_name(c), now, await self._sizes(c)))
        return {"Containers": listed}
