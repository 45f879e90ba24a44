"""The chaos run (``python -m scripts.chaos``) and its parts: rig, driver, faults, webhooks, checks, proxy."""
