"""``python -m web`` runs the API process (its metrics shared with the host's other web processes)."""

from web.shared_metrics import share

share()  # before anything imports prometheus_client

from web.app import main  # noqa: E402

main()
