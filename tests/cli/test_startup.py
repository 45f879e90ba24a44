"""The CLI's HTTP commands start quickly: they need the SDK, not the server's Stellar stack.

stellar-sdk alone took about 0.36 s of every ``offerhub events tail`` start (``python -X importtime``),
pulled in only to check keys in ``Settings``; an operator's Ctrl-C test and every CLI call paid it.
"""

from __future__ import annotations

import subprocess
import sys


def test_building_the_clis_parser_imports_no_stellar_sdk() -> None:
    probe = ("import sys\nfrom orchestrator.cli.main import build_parser\nbuild_parser('offerhub')\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('stellar_sdk', 'sqlalchemy', 'dramatiq')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
