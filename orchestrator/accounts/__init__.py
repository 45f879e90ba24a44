"""Who holds money: users, their custodial wallets, the platform user and its treasury pool, API keys."""
