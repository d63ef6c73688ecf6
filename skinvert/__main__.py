"""Command line: ``python -m skinvert demo --help``."""

import sys

from ._demo import main

if __name__ == "__main__":
    sys.exit(main())
