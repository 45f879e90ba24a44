"""What operators run and watch: checks, reconciliation, sweeps, the audit chain, key rotation, maintenance."""
