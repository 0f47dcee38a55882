#!/usr/bin/env bash
# The replication test topology on 127.0.0.1 (PostgreSQL 15 primary + 2 streaming standbys,
# PgBouncer, MariaDB primary + GTID replica): a thin CLI over tests/topology/replication.py.
# `scripts/cluster.sh help` lists the verbs; AIOPD_PORT_OFFSET and AIOPD_CLUSTER_DIR apply.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONPATH="$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m topology replication "$@"
