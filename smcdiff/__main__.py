"""``python -m smcdiff``: the ``smcdiff`` command."""

import sys

from .cli import main

sys.exit(main())
