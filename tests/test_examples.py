"""Every example runs to completion, and says what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "demo.py": "server received: alice at Globex (issued by Globex)",
    "pyopenssl_client.py": "server says: hello carol",
    "raw_control.py": "server verified the client: True",
    "suspend_resume.py": "server says: hello fetched late",
    "urllib3_client.py": "200 hello bob",
}


def test_every_example_is_checked():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert EXPECTED[name] in result.stdout
    assert result.stderr == ""
