"""HTTP sessions for the providers' synchronous clients, sized for the threads that share them."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter

#: Connections a session keeps open per host. A chain process runs 16 threads on one client of each
#: provider; with requests' default of 10, the calls past the tenth opened a connection and closed it
#: again after one request ("Connection pool is full, discarding connection").
POOL_SIZE = 32


def session() -> requests.Session:
    """A ``requests.Session`` whose pool keeps ``POOL_SIZE`` connections per host."""
    http = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http
