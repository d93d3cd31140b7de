"""``python -m d24fad`` runs the command line (used by the Slicer module's background process)."""

import sys

from .cli import main

sys.exit(main())
