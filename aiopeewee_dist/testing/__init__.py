"""Test helpers for applications built on aiopeewee_dist (see docs/testing-your-app.md).

:func:`rolled_back` runs every query of a manager inside one transaction on its primary
that is rolled back at the end; :func:`simulated_manager` builds a manager whose replicas
are simulated on the primary's server, so a test can make them lag, go down or take over.
The pytest plugin (:mod:`aiopeewee_dist.pytest_plugin`, loaded automatically) wraps both in
the ``aiopd`` and ``aiopd_manager`` fixtures.
"""

from __future__ import annotations

from ._rollback import RolledBack, rolled_back, simulated_manager
from ._simdriver import SimulatedOutage

__all__ = ["RolledBack", "SimulatedOutage", "rolled_back", "simulated_manager"]
