#!/usr/bin/env python3
"""A client written for Microsoft's token sidecar (Microsoft.Identity.Web.Sidecar), run
against `tokencache serve` unchanged: only the URL differs. Standard library only.

    SIDECAR_URL=http://127.0.0.1:8707 python3 microsoft_sidecar.py graph
    INCOMING_TOKEN=eyJ... python3 microsoft_sidecar.py graph    # on behalf of the caller

With INCOMING_TOKEN it calls the authenticated routes (`/AuthorizationHeader/{api}`,
`/DownstreamApi/{api}`), without it the `...Unauthenticated` ones (the app's own token).
Errors are RFC 9457 problem details (application/problem+json). Prints what it got, never
a token. Set TOKENCACHE_KEY when tokencache serve is configured with a caller key.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

SIDECAR = os.environ.get("SIDECAR_URL", "http://127.0.0.1:8707")


class SidecarProblem(Exception):
    """A problem-details answer: status, title, detail."""

    def __init__(self, status, title, detail):
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


def _call(method, route, api, incoming_token=None, overrides=None, body=None):
    authenticated = incoming_token is not None
    path = f"/{route}{'' if authenticated else 'Unauthenticated'}/{urllib.parse.quote(api)}"
    # Microsoft's dotted per-call overrides, e.g. {"optionsOverride.Scopes": ["User.Read"]}
    query = urllib.parse.urlencode(overrides or {}, doseq=True)
    request = urllib.request.Request(SIDECAR + path + (f"?{query}" if query else ""), method=method)
    if authenticated:
        request.add_header("Authorization", f"Bearer {incoming_token}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if os.environ.get("TOKENCACHE_KEY"):
        request.add_header("X-Tokencache-Key", os.environ["TOKENCACHE_KEY"])
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        problem = json.load(e)
        raise SidecarProblem(e.code, problem.get("title"), problem.get("detail")) from None


def authorization_header(api, incoming_token=None, overrides=None):
    """`{"authorizationHeader": "Bearer ..."}`'s value."""
    return _call("GET", "AuthorizationHeader", api, incoming_token, overrides)["authorizationHeader"]


def downstream_api(api, incoming_token=None, overrides=None, body=None):
    """The API's answer in Microsoft's envelope: {"statusCode", "headers", "content"}."""
    return _call("POST", "DownstreamApi", api, incoming_token, overrides, body)


def main():
    api = sys.argv[1] if len(sys.argv) > 1 else "graph"
    token = os.environ.get("INCOMING_TOKEN")
    try:
        header = authorization_header(api, token)
        answer = downstream_api(api, token)
    except SidecarProblem as e:
        print(f"error: {e.status} {e.title}: {e.detail}", file=sys.stderr)
        return 1
    scheme = header.split(" ", 1)[0]
    print(f"authorizationHeader: {scheme} <{len(header) - len(scheme) - 1} characters>")
    print(f"statusCode: {answer['statusCode']}")
    print(f"content: {answer['content']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
