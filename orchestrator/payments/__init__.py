"""Money in and out on the ledger: deposits (and the monitor that finds them) and withdrawals."""
