"""AirTM: linked accounts, top-ups (pay-ins), payouts, its webhooks and the enterprise balance."""
