"""``python -m topology VERB [patroni|galera|ha|replication|all]``: install, up, down, destroy,
status, env of whole topologies; ``python -m topology replication VERB [ARGS]``: the verbs of
``scripts/cluster.sh`` (start, stop, faults, ...) on the replication topology.

``up`` starts the topologies in parallel and prints how long each took to become healthy.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import Galera, Patroni, Replication, TopologyError, replication

WHICH = {
    "patroni": ("patroni",),
    "galera": ("galera",),
    "ha": ("patroni", "galera"),
    "replication": ("replication",),
    "all": ("patroni", "galera", "replication"),
}


def _topologies(which: str) -> list[Any]:
    kinds = {"patroni": Patroni, "galera": Galera, "replication": Replication}
    return [kinds[name]() for name in WHICH[which]]


def _up(topology: Any) -> str:
    topology.install()
    seconds = topology.start()
    return f"{type(topology).__name__.lower()}: healthy in {seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replication"]:
        return replication.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m topology")
    parser.add_argument("verb", choices=["install", "up", "down", "destroy", "status", "env"])
    parser.add_argument("which", nargs="?", default="ha", choices=list(WHICH))
    args = parser.parse_args(argv)
    topologies = _topologies(args.which)
    started = time.monotonic()
    try:
        if args.verb == "install":
            for topology in topologies:
                topology.install()
        elif args.verb == "up":
            with ThreadPoolExecutor(len(topologies)) as pool:
                for line in pool.map(_up, topologies):
                    print(line, file=sys.stderr)
            print(f"{args.which}-up: {time.monotonic() - started:.1f} s in all", file=sys.stderr)
        elif args.verb == "down":
            for topology in topologies:
                topology.stop()
        elif args.verb == "destroy":
            for topology in topologies:
                topology.destroy()
        elif args.verb == "status":
            for topology in topologies:
                status = topology.status()
                if isinstance(status, str):  # the replication topology's table
                    print(f"{type(topology).__name__}:\n{status}")
                else:
                    print(type(topology).__name__, status)
        else:
            for topology in topologies:
                for key, value in topology.env().items():
                    print(f"export {key}={shlex.quote(value)}")
    except TopologyError as exc:
        print(f"topology: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
