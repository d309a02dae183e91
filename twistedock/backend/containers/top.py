"""The processes of a container, as moby's daemon/top_unix.go."""

import os

from twisted.internet.utils import getProcessOutputAndValue

from ...errors import Conflict, InternalError, InvalidParameter


class TopMixin:
    """The top part of L{ContainerBackend}."""

    async def top(self, ref, ps_args) -> dict:
        c = self.get(ref)
        if not c.state.running or c.state.restarting:
            raise Conflict("Container %s is not running" % (c.id,))
        pids = set(await self.runtime.ps(c.id))
        out, err, code = await getProcessOutputAndValue(
            "ps", ps_args.split(), env=dict(os.environ), reactor=self.reactor
        )
        if code != 0:
            raise InvalidParameter(
                "Error running ps: %s" % ((err or out).decode("utf-8", "replace").strip(),)
            )
        lines = out.decode("utf-8", "replace").splitlines()
        if not lines:
            raise InternalError("Error running ps: no output")
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        index = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split()
            if len(fields) <= index or not fields[index].isdigit():
                continue
            if int(fields[index]) not in pids:
                continue
            row = fields[: len(titles) - 1] + [" ".join(fields[len(titles) - 1 :])]
            processes.append(row)
        return {"Titles": titles, "Processes": processes}
