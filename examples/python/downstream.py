#!/usr/bin/env python3
"""Calling an API through `tokencache serve` from Python (urllib only): serve acquires the
API's token (from its cache, or the provider) and calls the API's configured `base_url`
itself, so this program never holds a token.

    TOKENCACHE_URL=http://127.0.0.1:8707 python3 downstream.py orders items/42
    INCOMING_TOKEN=eyJ... python3 downstream.py orders-obo me    # on-behalf-of API

`GET /v1/downstream/{api}/{path}` is a pass-through: the API's status, headers and body come
back as they are (a redirect is returned, not followed). Prints the status, the content type
and the body. Set TOKENCACHE_KEY when the server is configured with a caller key.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("TOKENCACHE_URL", "http://127.0.0.1:8707")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """The API's redirect is its answer: show it, do not follow it."""

    def redirect_request(self, *args, **kwargs):
        return None


def call(api, path="", method="GET", body=None, content_type="application/json", incoming_token=None):
    """The API's answer to `method` `path`: (status, headers, body bytes)."""
    url = f"{BASE}/v1/downstream/{urllib.parse.quote(api)}"
    if path:
        url += "/" + path.lstrip("/")
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    if incoming_token:
        # on-behalf-of: forward the token the caller sent us (serve exchanges it; the API
        # gets the exchanged token, never this one)
        headers["Authorization"] = f"Bearer {incoming_token}"
    if os.environ.get("TOKENCACHE_KEY"):
        headers["X-Tokencache-Key"] = os.environ["TOKENCACHE_KEY"]
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        # the API's own error answer, or serve's ({"error", "error_description"})
        return e.code, e.headers, e.read()


def main():
    api = sys.argv[1] if len(sys.argv) > 1 else "orders"
    path = sys.argv[2] if len(sys.argv) > 2 else ""
    body = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    status, headers, content = call(
        api, path, "POST" if body is not None else "GET", body, incoming_token=os.environ.get("INCOMING_TOKEN")
    )
    print(f"status: {status}")
    print(f"content-type: {headers.get('Content-Type')}")
    print(f"body: {content.decode(errors='replace')}")
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
