"""``python -m topology VERB [patroni|galera|ha]``: install, up, down, destroy, status, env.

``up`` starts the topologies in parallel and prints how long each took to become healthy.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import Galera, Patroni, TopologyError


def _topologies(which: str) -> list[Any]:
    chosen: list[Any] = []
    if which in ("patroni", "ha"):
        chosen.append(Patroni())
    if which in ("galera", "ha"):
        chosen.append(Galera())
    return chosen


def _up(topology: Any) -> str:
    topology.install()
    seconds = topology.start()
    return f"{type(topology).__name__.lower()}: healthy in {seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topology")
    parser.add_argument("verb", choices=["install", "up", "down", "destroy", "status", "env"])
    parser.add_argument("which", nargs="?", default="ha", choices=["patroni", "galera", "ha"])
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
            print(f"ha-up: {time.monotonic() - started:.1f} s in all", file=sys.stderr)
        elif args.verb == "down":
            for topology in topologies:
                topology.stop()
        elif args.verb == "destroy":
            for topology in topologies:
                topology.destroy()
        elif args.verb == "status":
            for topology in topologies:
                print(type(topology).__name__, topology.status())
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
