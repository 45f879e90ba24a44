"""HTTP sessions for the providers' synchronous clients, sized for the threads that share them."""

from __future__ import annotations

import os
import urllib.request

import requests
from requests.adapters import HTTPAdapter

#: Connections a session keeps open per host. A chain process runs 16 threads on one client of each
#: provider; with requests' default of 10, the calls past the tenth opened a connection and closed it
#: again after one request ("Connection pool is full, discarding connection").
POOL_SIZE = 32


#: The CA bundle variables requests reads from the environment (``trust_env``).
_CA_BUNDLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def session() -> requests.Session:
    """A ``requests.Session`` whose pool keeps ``POOL_SIZE`` connections per host.

    Where the environment names no proxy, the session does not read the environment on every request
    (``trust_env``): requests scanned all of ``os.environ`` for proxy variables twice per call, 5 % of a
    chain process (issue 16 profile). A CA bundle named there is still used. With a proxy configured the
    session keeps requests' reading, so ``NO_PROXY`` and the rest apply as requests documents them.
    """
    http = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    if not urllib.request.getproxies_environment():
        http.trust_env = False
        bundle = next((os.environ[name] for name in _CA_BUNDLES if os.environ.get(name)), None)
        if bundle:
            http.verify = bundle
    return http
