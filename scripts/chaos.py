#!/usr/bin/env python3
"""Runs ``python -m scripts.chaos`` (``scripts/chaos/__main__.py`` has the options).

Kept for the command line of DESIGN decision 31; standard library only. It execs the project's
virtualenv Python when there is one, with the repository root on ``PYTHONPATH``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

if __name__ == "__main__":
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.execve(python, [python, "-m", "scripts.chaos", *sys.argv[1:]], {**os.environ, "PYTHONPATH": path})
