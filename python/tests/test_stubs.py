"""The checked-in stubs (python/toolstream/v1) are what proto/ generates: never stale."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_checked_in_stubs_match_the_proto() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "python" / "gen_stubs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
