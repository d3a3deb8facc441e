"""``python -m benchmarks [--quick] [--json] [--only SECTION ...]``.

Also runs as a file, for an environment where openssl_ccb is installed and
the source tree must stay off the front of ``sys.path`` (Debian's, run with
``-P``): ``python -P benchmarks/__main__.py``. The repository root then goes
*last* on ``sys.path``, so the installed openssl_ccb is the one measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file
    sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
