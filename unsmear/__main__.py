"""``python -m unsmear``: the same as the ``unsmear`` console command."""

import sys

from unsmear.cli import main

if __name__ == "__main__":
    sys.exit(main())
