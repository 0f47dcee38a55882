"""``python -m aiopeewee_dist status``: see :mod:`aiopeewee_dist._cli`."""

import sys

from ._cli import main

sys.exit(main())
