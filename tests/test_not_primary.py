"""A node taken for the primary that has become read-only refuses writes with ``NotPrimary``.

That is a leader demoted by a switchover which the manager has not heard of yet. Here the
manager's "primary" is a real standby, on every PostgreSQL driver and on MariaDB: its refusal
(SQLSTATE 25006; MariaDB's error 1290, running with --read-only) must reach the caller as the
library's error, which says that nothing was committed, and not as the driver's error.
"""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest
from conftest import CLUSTER_BACKENDS, topology_for

from aiopeewee_dist import Manager, NodeUnavailable, NotPrimary

pytestmark = pytest.mark.cluster


class Demoted(peewee.Model):
    name = peewee.CharField()

    class Meta:
        table_name = "not_primary_item"


@pytest.mark.parametrize("backend", CLUSTER_BACKENDS)
async def test_a_standby_taken_for_the_primary_refuses_writes_with_not_primary(
    backend: str, tmp_path: Path
) -> None:
    topology = topology_for(backend, tmp_path)
    real = topology.manager()
    stale = Manager(topology.replicas[0], health_check_interval=None, read_your_writes=None)
    try:
        await real.drop_tables([Demoted], safe=True)
        await real.create_tables([Demoted])
        await topology.wait_replicated()
        with pytest.raises(
            NotPrimary, match="refused a write: it is read-only, no longer the primary"
        ) as caught:
            await stale.create(Demoted, name="refused")
        assert isinstance(caught.value, NodeUnavailable) and "nothing was committed" in str(caught.value)
        with pytest.raises(NotPrimary):
            async with stale.transaction():
                await stale.execute(Demoted.insert(name="refused in a transaction"))
        assert await stale.count(Demoted.select()) == 0  # reads still work there
        assert await real.count(Demoted.select()) == 0
    finally:
        await stale.close()
        await real.drop_tables([Demoted], safe=True)
        await real.close()
