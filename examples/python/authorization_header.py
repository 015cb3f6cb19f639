#!/usr/bin/env python3
"""Calling `tokencache serve` from Python with the standard library only (urllib).

    TOKENCACHE_URL=http://127.0.0.1:8707 python3 authorization_header.py orders
    INCOMING_TOKEN=eyJ... python3 authorization_header.py orders-obo   # on-behalf-of API

Prints what it got (source, expiry, the header's length), never the token itself.
Set TOKENCACHE_KEY when the server is configured with a caller key. INCOMING_TOKEN is the
bearer token your service received; serve validates it ([inbound]) before anything else:
a forged, expired or foreign one is `401 invalid_token`.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("TOKENCACHE_URL", "http://127.0.0.1:8707")


class TokenServiceError(Exception):
    """An error answer of the service: HTTP status, `error` code and description."""

    def __init__(self, status, error, description):
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description


def authorization_header(api, incoming_token=None, scopes=None, force_refresh=False):
    """The Authorization header value for `api`, and the whole answer."""
    query = {}
    if scopes:
        query["scopes"] = " ".join(scopes)
    if force_refresh:
        query["force_refresh"] = "true"
    url = f"{BASE}/v1/authorization-header/{urllib.parse.quote(api)}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    request = urllib.request.Request(url)
    if incoming_token:
        # on-behalf-of: forward the token the caller sent us
        request.add_header("Authorization", f"Bearer {incoming_token}")
    if os.environ.get("TOKENCACHE_KEY"):
        request.add_header("X-Tokencache-Key", os.environ["TOKENCACHE_KEY"])
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as e:
        body = json.load(e)
        raise TokenServiceError(e.code, body["error"], body["error_description"]) from None
    return answer["authorization_header"], answer


def main():
    api = sys.argv[1] if len(sys.argv) > 1 else "orders"
    try:
        header, answer = authorization_header(api, os.environ.get("INCOMING_TOKEN"))
    except TokenServiceError as e:
        print(f"error: {e.status} {e.error}", file=sys.stderr)
        return 1
    # Use it: urllib.request.Request("https://orders.example/...", headers={"Authorization": header})
    scheme = header.split(" ", 1)[0]
    print(f"source: {answer['source']}")
    print(f"expires_on: {answer['expires_on']}")
    print(f"header: {scheme} <{len(header) - len(scheme) - 1} characters>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
