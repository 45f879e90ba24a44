"""Results out: the outbox relay (SSE) and signed webhooks."""
