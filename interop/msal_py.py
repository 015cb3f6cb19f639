#!/usr/bin/env python3
"""MSAL Python driver for tokencache's interop tests (crates/tokencache/tests/interop_{python,node,fixtures}.rs).

Runs the real `msal` package (pinned in interop/requirements.txt, installed by interop/setup.sh)
with a fake, in-process HTTP client: nothing leaves the process.

Usage:  python msal_py.py SUBCOMMAND  < request.json  > result.json

write     Build a cache through MSAL and print it (`SerializableTokenCache.serialize()`).
          Request: {"events": [EVENT, ...]} or a single EVENT, where
            EVENT = {"client_id", "authority": "https://host/TENANT", "scope": [...],
                     "response": {token endpoint JSON}, "now": unix seconds,
                     "grant": "authorization_code" | "client_credentials" | "on_behalf_of"
                              | "refresh_token",
                     "assertion": "<incoming token>" (on_behalf_of only),
                     "via": "app" (default) | "cache"}
          via=app   drives ConfidentialClientApplication.acquire_token_by_authorization_code /
                    acquire_token_for_client / acquire_token_on_behalf_of, whose fake token
                    endpoint answers with `response`;
                    MSAL's own code turns it into the cache event (the strongest proof).
          via=cache calls SerializableTokenCache.add(event, now=now) with the event MSAL builds.
          Output: {"blob": "<serialized cache>", "results": [{"token_source", "fingerprint"}...]}

find      Look an access token up in a blob the way MSAL does.
          Request: {"blob", "client_id", "authority", "scope": [...], "home_account_id": str|null,
                    "assertion": str|null, "now", "tenant_id": str|null}
          tenant_id: the id the authority's tenant (a domain) stands for; the fake discovery
          answers with it, as Entra's does (write events take it too).
          Runs (1) ConfidentialClientApplication.acquire_token_silent (user),
          acquire_token_on_behalf_of (assertion) or acquire_token_for_client (neither) against a
          fake token endpoint that FAILS,
          so a returned token is a cache hit; and (2) TokenCache.search() with the same query
          application.py builds (client_id, environment, realm, home_account_id, target=scope).
          Output: {"app": FP|null, "app_token_source": str|null, "search": FP|null,
                   "accounts": [home_account_id...], "token_requests": n}

find_rt   Look a refresh token up the way MSAL's silent flow does
          (_acquire_token_silent_by_finding_rt_belongs_to_me_or_my_family: query
          home_account_id + environment + client_id, no target filter).
          Request: {"blob", "client_id", "authority", "home_account_id"}
          Output: {"search": FP|null, "count": n}

FP is the fingerprint of a secret: the first 16 hex digits of SHA-256 of its UTF-8 bytes.
Secrets are never printed.
"""
import hashlib
import json
import sys
import time as _real_time
import types
from urllib.parse import urlparse

import msal
import msal.application
import msal.token_cache
from msal.token_cache import TokenCache


def fingerprint(secret):
    if secret is None:
        return None
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


class FrozenClock:
    """Stands in for the `time` module inside msal.application / msal.token_cache so a test can
    pin "now". Everything except time() is the real module."""

    def __init__(self, now):
        self._now = now

    def time(self):
        return float(self._now) if self._now is not None else _real_time.time()

    def __getattr__(self, name):
        return getattr(_real_time, name)


def freeze_time(now):
    clock = FrozenClock(now)
    msal.application.time = clock
    msal.token_cache.time = clock


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code = status_code
        self.text = json.dumps(body)
        self.headers = {"content-type": "application/json"}

    def raise_for_status(self):
        if self.status_code >= 400:
            raise RuntimeError("fake http status %d" % self.status_code)


class FakeHttp:
    """msal.oauth2cli.http.HttpClient: serves OIDC discovery for any authority, and answers the
    token endpoint with `token_response` (or an invalid_grant error when it is None)."""

    def __init__(self, token_response=None, tenant_id=None):
        self.token_response = token_response
        self.tenant_id = tenant_id  # the id a tenant named by domain stands for, as Entra answers
        self.token_requests = 0
        self.gets = []

    def get(self, url, params=None, headers=None, **kwargs):
        self.gets.append(url)
        if "openid-configuration" in url:
            u = urlparse(url)
            path = u.path.split("/.well-known")[0]
            if self.tenant_id:
                # Entra's discovery of a tenant named by domain answers with its id
                rest = path.strip("/").split("/")[1:]
                path = "/" + "/".join([self.tenant_id] + rest)
            base = "{}://{}{}".format(u.scheme, u.netloc, path)
            tenant_base = base[: -len("/v2.0")] if base.endswith("/v2.0") else base
            return FakeResponse(200, {
                "issuer": base,
                "authorization_endpoint": tenant_base + "/oauth2/v2.0/authorize",
                "token_endpoint": tenant_base + "/oauth2/v2.0/token",
                "device_authorization_endpoint": tenant_base + "/oauth2/v2.0/devicecode",
            })
        return FakeResponse(404, {"error": "not_found"})

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        self.token_requests += 1
        if self.token_response is None:
            return FakeResponse(400, {
                "error": "invalid_grant",
                "error_description": "interop driver: token endpoint disabled (cache-only lookup)",
            })
        return FakeResponse(200, self.token_response)

    def close(self):
        pass


def make_app(client_id, authority, http):
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential="fake-client-secret",
        authority=authority,
        http_client=http,
        instance_discovery=False,
        validate_authority=False,
        token_cache=msal.SerializableTokenCache(),
    )


def split_authority(authority):
    u = urlparse(authority)
    return u.netloc.lower(), u.path.strip("/").split("/")[0]


def write(req):
    events = req["events"] if "events" in req else [req]
    cache = msal.SerializableTokenCache()
    results = []
    for ev in events:
        now = ev.get("now")
        via = ev.get("via", "app")
        grant = ev.get("grant", "authorization_code")
        if via == "cache":
            environment, realm = split_authority(ev["authority"])
            cache.add({
                "client_id": ev["client_id"],
                "scope": ev["response"]["scope"].split() if "scope" in ev["response"] else ev["scope"],
                "token_endpoint": ev["authority"].rstrip("/") + "/oauth2/v2.0/token",
                "environment": environment,
                "grant_type": grant,
                "response": dict(ev["response"]),
                "data": {"scope": ev["scope"]},
            }, now=now)
            results.append({"token_source": "cache.add", "fingerprint": fingerprint(ev["response"].get("access_token"))})
            continue
        freeze_time(now)
        http = FakeHttp(ev["response"], ev.get("tenant_id"))
        app = make_app(ev["client_id"], ev["authority"], http)
        app.token_cache.deserialize(cache.serialize())
        if grant == "authorization_code":
            r = app.acquire_token_by_authorization_code(
                "fake-auth-code", ev["scope"], redirect_uri="http://localhost/redirect")
        elif grant == "client_credentials":
            r = app.acquire_token_for_client(ev["scope"])
        elif grant == "on_behalf_of":
            r = app.acquire_token_on_behalf_of(ev["assertion"], ev["scope"])
        else:
            raise SystemExit("unsupported grant for via=app: %s" % grant)
        if "error" in r:
            raise SystemExit("msal returned an error: %s %s" % (r.get("error"), r.get("error_description")))
        cache = app.token_cache
        results.append({"token_source": r.get("token_source"), "fingerprint": fingerprint(r.get("access_token"))})
    return {"blob": cache.serialize(), "results": results}


def find(req):
    client_id, authority, scope = req["client_id"], req["authority"], req["scope"]
    home_account_id = req.get("home_account_id")
    now = req.get("now")
    environment, realm = split_authority(authority)
    # application.py's realm is its authority's tenant as the token endpoint names it: for a
    # tenant named by domain, the id Entra's discovery answers with
    realm = req.get("tenant_id") or realm

    # (2) the cache query application.py builds, via the public search().
    cache = msal.SerializableTokenCache()
    cache.deserialize(req["blob"])
    query = {"client_id": client_id, "environment": environment, "realm": realm,
             "home_account_id": home_account_id}
    hit = None
    for entry in cache.search(TokenCache.CredentialType.ACCESS_TOKEN, target=scope, query=query, now=now):
        if int(entry["expires_on"]) - (now if now is not None else _real_time.time()) < 5 * 60:
            continue  # application.py treats tokens expiring within 5 minutes as expired
        hit = entry
        break

    # (1) the public application API with a token endpoint that fails.
    freeze_time(now)
    http = FakeHttp(None, req.get("tenant_id"))
    app = make_app(client_id, authority, http)
    app.token_cache.deserialize(req["blob"])
    accounts = app.get_accounts()
    result = None
    if req.get("assertion"):
        result = app.acquire_token_on_behalf_of(req["assertion"], scope)
    elif home_account_id is None:
        result = app.acquire_token_for_client(scope)
    else:
        account = next((a for a in accounts if a["home_account_id"] == home_account_id), None)
        if account is None:  # no Account record: the AT lookup needs only home_account_id
            account = {"home_account_id": home_account_id, "environment": environment}
        result = app.acquire_token_silent(scope, account)
    ok = bool(result) and "access_token" in result
    return {
        "app": fingerprint(result["access_token"]) if ok else None,
        "app_token_source": result.get("token_source") if ok else None,
        "search": fingerprint(hit["secret"]) if hit else None,
        "accounts": sorted(a["home_account_id"] for a in accounts),
        "token_requests": http.token_requests,
    }


def find_rt(req):
    environment, _ = split_authority(req["authority"])
    cache = msal.SerializableTokenCache()
    cache.deserialize(req["blob"])
    query = {"home_account_id": req["home_account_id"], "environment": environment,
             "client_id": req["client_id"]}
    if req.get("family_id"):
        query = {"home_account_id": req["home_account_id"], "environment": environment,
                 "family_id": req["family_id"]}
    found = list(cache.search(TokenCache.CredentialType.REFRESH_TOKEN, query=query))
    return {"search": fingerprint(found[0]["secret"]) if found else None, "count": len(found)}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("write", "find", "find_rt", "version"):
        raise SystemExit("usage: msal_py.py write|find|find_rt|version < request.json")
    cmd = sys.argv[1]
    if cmd == "version":
        out = {"msal": msal.__version__}
    else:
        req = json.load(sys.stdin)
        out = {"write": write, "find": find, "find_rt": find_rt}[cmd](req)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
