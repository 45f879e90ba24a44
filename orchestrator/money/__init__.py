"""Money and the book: amounts, the ledger (the one module that moves money), balances and statements."""
