"""MSAL Python's cache lookup, timed on this machine, for docs/design.md §13's comparison
with tokencache's acquisition served from L1 (crates/tokencache/benches/acquire.rs).

What is timed is what ConfidentialClientApplication.acquire_token_for_client does on a
cache hit after its argument handling: TokenCache.search for the app's access token
(MSAL Python 1.x, pinned in interop/requirements.txt). The cache holds one app token (as
for client credentials), and, in a second run, that token plus 20 other apps' tokens.

Run with the interop venv: .peers/venv/bin/python interop/bench_msal_search.py
Prints one line per case: the median of 7 rounds, per call, in microseconds.
"""

import statistics
import time
import timeit

import msal

CLIENT = "6e2ab7a5-4c3b-4d0e-9a51-3b0b1c2d9f10"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SCOPES = ["https://graph.microsoft.com/.default"]
ENDPOINT = f"https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token"


def cache_with(apps):
    cache = msal.SerializableTokenCache()
    now = int(time.time())
    for i in range(apps):
        client = CLIENT if i == 0 else f"client-{i}"
        cache.add(
            {
                "client_id": client,
                "scope": SCOPES,
                "token_endpoint": ENDPOINT,
                "response": {
                    "access_token": "x" * 1200,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                },
            },
            now=now,
        )
    return cache


def search(cache):
    # acquire_token_for_client → _acquire_token_silent_from_cache_and_possibly_refresh_it
    hits = cache.search(
        msal.TokenCache.CredentialType.ACCESS_TOKEN,
        target=SCOPES,
        query={
            "client_id": CLIENT,
            "environment": "login.microsoftonline.com",
            "realm": TENANT,
            "home_account_id": None,
        },
        now=time.time(),
    )
    found = next(iter(hits), None)
    assert found is not None
    return found


for apps in (1, 21):
    cache = cache_with(apps)
    n = 20000
    rounds = [timeit.timeit(lambda: search(cache), number=n) / n * 1e6 for _ in range(7)]
    print(f"msal-python {msal.__version__} search, {apps} app token(s) in the cache: "
          f"{statistics.median(rounds):.2f} us per call (median of 7 x {n})")
