"""The test topologies that run beside the library, on 127.0.0.1 (stdlib only).

- :class:`Replication`: PostgreSQL 15 primary + 2 streaming standbys and PgBouncer
  (``postgres.py``, ``pgbouncer.py``), MariaDB primary + GTID replica (``mariadb.py``), put
  together in ``replication.py``;
- :class:`Patroni`: PostgreSQL 15 x3 under Patroni with one etcd (``patroni.py``);
- :class:`Galera`: MariaDB 10.11 x3 as a Galera cluster (``galera.py``).

``procs.py`` holds what they share: processes, pid files, polling, ports, the state dir.
``python -m topology VERB [patroni|galera|ha|replication|all]`` (with ``tests/`` on
``PYTHONPATH``) is the CLI behind ``make ha-up`` / ``make ha-down``; ``python -m topology
replication VERB [ARGS]`` is ``scripts/cluster.sh``. Tests call the same objects for their faults.
Each ``start`` returns the seconds the topology took to become healthy.
"""

from __future__ import annotations

from .galera import Galera
from .patroni import Patroni
from .procs import TopologyError
from .replication import Replication

__all__ = ["Galera", "Patroni", "Replication", "TopologyError"]
