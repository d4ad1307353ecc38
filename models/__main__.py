"""``python -m models train|evaluate|export|interpolate``; see ``models.cli``."""

import sys

from models.cli import main

if __name__ == "__main__":
    sys.exit(main())
