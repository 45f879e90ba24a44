"""``python -m web`` runs the API process."""

from web.app import main

main()
