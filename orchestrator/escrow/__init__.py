"""Orders and their Trustless Work escrows: funding, release, refund, disputes, and the TW envelopes and fees."""
