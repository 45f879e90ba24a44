"""The ``offerhub`` command: operator commands, the SDK-backed HTTP commands, demo and smoke."""
