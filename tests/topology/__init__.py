"""The test topologies that run beside the library, on 127.0.0.1 (stdlib only).

- :class:`Patroni`: PostgreSQL 15 x3 under Patroni with one etcd (``patroni.py``);
- :class:`Galera`: MariaDB 10.11 x3 as a Galera cluster (``galera.py``).

``python -m topology VERB [patroni|galera|ha]`` (with ``tests/`` on ``PYTHONPATH``) is the CLI
behind ``make ha-up`` / ``make ha-down``; tests call the same objects for their faults.
The replication topology of ``scripts/cluster.sh`` is not here yet.
"""

from __future__ import annotations

from .galera import Galera
from .patroni import Patroni
from .procs import TopologyError

__all__ = ["Galera", "Patroni", "TopologyError"]
