"""``python -m orchestrator <command>``: the ``offerhub`` operator commands."""

import sys

from orchestrator.cli.main import main

sys.exit(main(prog="python -m orchestrator"))
