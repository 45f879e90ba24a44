"""Where a host's web processes share their Prometheus figures (prometheus-client multiprocess mode).

Several web processes share one port (``reuse_port``), so a scrape lands on any of them: each writes
its counters to files in one directory and ``/metrics`` adds them all up. prometheus-client picks its
mode when first imported, so ``python -m web`` calls ``share`` before anything imports it; an app built
in another process (tests) keeps the process's own registry.
"""

from __future__ import annotations

import os
import tempfile

from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

#: The shared directory once ``share`` ran in this process (a one-element holder: set once, read often).
state: dict[str, str] = {}


def directory() -> str | None:
    return state.get("directory")


def share() -> None:
    """Point prometheus-client at ``WEB_METRICS_DIR`` (default: one directory per port under the temp dir)."""
    try:
        settings = Settings.from_env()
    except ConfigError:
        return  # main() reports the configuration problems
    path = settings.web_metrics_dir or os.path.join(tempfile.gettempdir(), f"offerhub-web-metrics-{settings.port}")
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    state["directory"] = path
