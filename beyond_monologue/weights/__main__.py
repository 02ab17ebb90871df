"""``python -m beyond_monologue.weights`` (see :mod:`.cli`)."""

import sys

from .cli import main

sys.exit(main())
