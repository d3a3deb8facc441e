"""``python -m openssl_ccb``: the openssl-ccb command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
