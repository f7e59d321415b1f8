"""``python -m tinyvec`` is the ``tinyvec`` command."""

import sys

from .cli import main

sys.exit(main())
