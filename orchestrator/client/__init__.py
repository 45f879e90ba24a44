"""The Python SDK for the OFFER-HUB Orchestrator API (spec cli-sdk.md §1).

```python
from orchestrator.client import Client

with Client("http://localhost:4000", "ohk_test_…") as client:
    buyer = client.users.create(external_user_id="buyer-1", email="buyer@example.com")
    for event in client.events.stream(types=["order.*"]):
        print(event["eventType"])
```

``AsyncClient`` offers the same groups and methods as coroutines and async iterators.
"""

from orchestrator.client.clients import AsyncClient, Client
from orchestrator.client.errors import (
    AuthenticationError,
    AuthorizationError,
    BusinessRuleError,
    ConflictError,
    IdempotencyError,
    InsufficientFundsError,
    InvalidStateTransitionError,
    MaintenanceError,
    NetworkError,
    NotFoundError,
    OfferHubError,
    ProviderError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    ValidationError,
)
from orchestrator.client.events import Event
from orchestrator.client.transport import VERSION, Page, Result, normalise_url

__all__ = [
    "VERSION", "AsyncClient", "AuthenticationError", "AuthorizationError", "BusinessRuleError", "Client",
    "ConflictError", "Event", "IdempotencyError", "InsufficientFundsError", "InvalidStateTransitionError",
    "MaintenanceError", "NetworkError", "NotFoundError", "OfferHubError", "Page", "ProviderError", "RateLimitError",
    "Result", "ServerError", "ServiceUnavailableError", "ValidationError", "normalise_url",
]
