"""The C{twistedock} command's client subcommands, for what the docker CLI
lacks:

    twistedock checkpoint export CONTAINER CHECKPOINT [-o FILE]   (stdout: -)
    twistedock checkpoint import [FILE] [--name NAME]             (stdin: -)
    twistedock events [--filter KEY=VALUE]... [--since T] [--until T] [--format json]
    twistedock migrate SOURCE_HOST TARGET_HOST CONTAINER ...      (twistedock-migrate)

The daemon is chosen as the docker CLI chooses it (C{-H}, C{DOCKER_HOST},
the TLS variables, the current context)."""

import argparse
import json
import sys
import time
from typing import Optional

from .client import DockerClient, DockerClientError, parse_host

SUBCOMMANDS = ("checkpoint", "events", "migrate")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="twistedock", description="twistedock's client commands.")
    daemon = argparse.ArgumentParser(add_help=False)
    daemon.add_argument("-H", "--host", default=None, help="the daemon (default: as the docker CLI finds it)")
    commands = p.add_subparsers(dest="command", required=True)

    checkpoint = commands.add_parser("checkpoint", help="move checkpoints to and from files")
    verbs = checkpoint.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser("export", parents=[daemon], help="write a checkpoint (and its container) to a tar file")
    export.add_argument("container")
    export.add_argument("checkpoint")
    export.add_argument("-o", "--output", default="-", help="the file (default: stdout)")
    imported = verbs.add_parser("import", parents=[daemon], help="create a container and its checkpoint from an export")
    imported.add_argument("file", nargs="?", default="-", help="the tar (default: stdin)")
    imported.add_argument("--name", default=None, help="the container's name (default: the exported one)")

    events = commands.add_parser("events", parents=[daemon], help="follow the daemon's events")
    events.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    events.add_argument("--since", default=None)
    events.add_argument("--until", default=None)
    events.add_argument("--format", default="", help="json: one JSON document a line")
    return p


def parse_filters(pairs) -> Optional[dict]:
    filters = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise ValueError("bad format of filter (expected name=value): %s" % (pair,))
        filters.setdefault(key, []).append(value)
    return filters or None


def format_event(event: dict) -> str:
    """As C{docker events} prints one."""
    nanos = event.get("timeNano") or int(event.get("time", 0)) * 10**9
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(nanos // 10**9)) + ".%09dZ" % (nanos % 10**9,)
    actor = event.get("Actor") or {}
    attributes = ", ".join("%s=%s" % item for item in sorted((actor.get("Attributes") or {}).items()))
    line = "%s %s %s %s" % (stamp, event.get("Type", ""), event.get("Action", ""), actor.get("ID", ""))
    return line + (" (%s)" % (attributes,) if attributes else "")


async def checkpoint_export(client, args) -> None:
    if args.output == "-":
        if sys.stdout.isatty():
            raise ValueError("refusing to write a tar to a terminal: use -o FILE or redirect stdout")
        stream = await client.checkpoints.export(args.container, args.checkpoint)
        out = sys.stdout.buffer
        await stream.write_to(out.write)
        out.flush()
    else:
        await client.checkpoints.export_to(args.container, args.checkpoint, args.output)


async def checkpoint_import(client, args) -> None:
    source = sys.stdin.buffer if args.file == "-" else args.file
    sys.stdout.write(await client.checkpoints.import_(source, name=args.name) + "\n")


async def events(client, args) -> None:
    stream = await client.events.stream(since=args.since, until=args.until, filters=parse_filters(args.filter))
    async for event in stream:
        sys.stdout.write((json.dumps(event) if args.format == "json" else format_event(event)) + "\n")
        sys.stdout.flush()


async def run(reactor, args) -> None:
    if args.host:
        client = DockerClient.for_host(reactor, parse_host(args.host))
    else:
        client = DockerClient.from_env(reactor)
    try:
        if args.command == "checkpoint":
            await (checkpoint_export if args.verb == "export" else checkpoint_import)(client, args)
        else:
            await events(client, args)
    finally:
        await client.close()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["migrate"]:
        from .migrate import main as migrate

        return migrate(argv[1:])
    args = parser().parse_args(argv)
    from twisted.internet import defer, reactor

    outcome = {"code": 1}

    async def go():
        try:
            await run(reactor, args)
            outcome["code"] = 0
        except (DockerClientError, ValueError, OSError) as e:
            sys.stderr.write("twistedock: %s\n" % (e,))
        except Exception as e:
            sys.stderr.write("twistedock: %r\n" % (e,))

    reactor.callWhenRunning(lambda: defer.ensureDeferred(go()).addBoth(lambda _: reactor.stop()))
    reactor.run()
    return outcome["code"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
