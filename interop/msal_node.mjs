#!/usr/bin/env node
// msal-node driver for tokencache's interop tests (crates/tokencache/tests/interop_{python,node,fixtures}.rs).
//
// Runs the real @azure/msal-node (pinned in interop/package.json + package-lock.json, installed by
// interop/setup.sh into $TOKENCACHE_PEERS_DIR, default <repo>/.peers) with a fake in-process
// network client: nothing leaves the process.
//
// Usage:  node msal_node.mjs SUBCOMMAND < request.json > result.json
//
// write   Build a cache through ConfidentialClientApplication and print tokenCache.serialize().
//         Request: {"events": [EVENT, ...]} or one EVENT, where
//           EVENT = {"client_id", "authority": "https://host/TENANT", "scope": [...],
//                    "response": {token endpoint JSON}, "now": unix seconds,
//                    "grant": "authorization_code" | "client_credentials" | "on_behalf_of",
//                    "assertion": "<incoming token>" (on_behalf_of only),
//                    "tenant_id": the id a tenant named by domain stands for (optional, as in find)}
//         The fake token endpoint answers with `response`; msal-node's own code caches it.
//         Output: {"blob": "<serialized cache>", "results": [{"from_cache", "fingerprint"}...]}
//
// find    Look an access token up in a blob through the public API with a token endpoint that
//         FAILS, so a returned token is a cache hit:
//           home_account_id (user)   -> acquireTokenSilent({account, scopes})
//           assertion (OBO)          -> acquireTokenOnBehalfOf({oboAssertion, scopes})
//           neither (app)            -> acquireTokenByClientCredential({scopes})
//         Request: {"blob", "client_id", "authority", "scope": [...], "home_account_id": str|null,
//                   "assertion": str|null, "now", "tenant_id": str|null}
//         tenant_id: the id the authority's tenant (a domain) stands for; the fake discovery
//         answers with it, as Entra's does.
//         Output: {"app": FP|null, "from_cache": bool|null, "error": code|null,
//                  "accounts": [homeAccountId...], "token_requests": n}
//
// find_rt Refresh-token lookup as msal-node's silent flow does it (CacheManager.getRefreshToken
//         for the account + client id). Request: {"blob", "client_id", "authority",
//         "home_account_id"}. Output: {"search": FP|null}
//
// FP = first 16 hex digits of SHA-256 of the secret's UTF-8 bytes. Secrets are never printed.
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const peers = process.env.TOKENCACHE_PEERS_DIR || resolve(here, "..", ".peers");
if (!existsSync(join(peers, "node_modules", "@azure", "msal-node"))) {
    console.error(`msal_node.mjs: @azure/msal-node not found under ${peers}; run interop/setup.sh`);
    process.exit(2);
}
const require = createRequire(join(peers, "package.json"));
const msal = require("@azure/msal-node");
const msalVersion = require("@azure/msal-node/package.json").version;

const fingerprint = (s) => (s == null ? null : createHash("sha256").update(s, "utf8").digest("hex").slice(0, 16));

// msal-node reads the clock through `new Date()` and Date.now(); pin both when a test gives "now".
const RealDate = Date;
let frozenMs = null;
class FrozenDate extends RealDate {
    constructor(...args) {
        if (args.length === 0 && frozenMs !== null) super(frozenMs);
        else super(...args);
    }
    static now() {
        return frozenMs !== null ? frozenMs : RealDate.now();
    }
}
globalThis.Date = FrozenDate;
function freezeTime(now) {
    frozenMs = now == null ? null : now * 1000;
}

function json(status, body) {
    return { status, headers: { "content-type": "application/json" }, body };
}

class FakeNetwork {
    constructor(tokenResponse, tenantId) {
        this.tokenResponse = tokenResponse; // null: the token endpoint fails
        this.tenantId = tenantId; // the id a tenant named by domain stands for, as Entra answers
        this.tokenRequests = 0;
    }
    async sendGetRequestAsync(url) {
        const u = new URL(url);
        if (u.pathname.endsWith("/discovery/instance")) {
            const authz = new URL(u.searchParams.get("authorization_endpoint"));
            const tenant = authz.pathname.split("/")[1];
            return json(200, {
                tenant_discovery_endpoint: `https://${authz.host}/${tenant}/v2.0/.well-known/openid-configuration`,
                "api-version": "1.1",
                metadata: [{ preferred_network: authz.host, preferred_cache: authz.host, aliases: [authz.host] }],
            });
        }
        if (u.pathname.includes("/.well-known/openid-configuration")) {
            const tenant = this.tenantId || u.pathname.split("/")[1];
            const base = `https://${u.host}/${tenant}`;
            return json(200, {
                issuer: `${base}/v2.0`,
                authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
                token_endpoint: `${base}/oauth2/v2.0/token`,
                end_session_endpoint: `${base}/oauth2/v2.0/logout`,
                jwks_uri: `${base}/discovery/v2.0/keys`,
                response_types_supported: ["code"],
                scopes_supported: ["openid"],
            });
        }
        return json(404, { error: "not_found" });
    }
    async sendPostRequestAsync() {
        this.tokenRequests += 1;
        if (this.tokenResponse == null) {
            return json(400, {
                error: "invalid_grant",
                error_description: "interop driver: token endpoint disabled (cache-only lookup)",
            });
        }
        return json(200, this.tokenResponse);
    }
}

function makeApp(clientId, authority, network) {
    return new msal.ConfidentialClientApplication({
        auth: { clientId, authority, clientSecret: "fake-client-secret" },
        system: {
            networkClient: network,
            disableInternalRetries: true,
            loggerOptions: { loggerCallback: () => {}, piiLoggingEnabled: false, logLevel: msal.LogLevel.Error },
        },
    });
}

async function write(req) {
    const events = req.events || [req];
    let blob = null;
    const results = [];
    for (const ev of events) {
        freezeTime(ev.now);
        const network = new FakeNetwork(ev.response, ev.tenant_id);
        const app = makeApp(ev.client_id, ev.authority, network);
        if (blob) app.getTokenCache().deserialize(blob);
        const grant = ev.grant || "authorization_code";
        let r;
        if (grant === "authorization_code") {
            r = await app.acquireTokenByCode({ code: "fake-auth-code", scopes: ev.scope, redirectUri: "http://localhost/redirect" });
        } else if (grant === "client_credentials") {
            r = await app.acquireTokenByClientCredential({ scopes: ev.scope });
        } else if (grant === "on_behalf_of") {
            r = await app.acquireTokenOnBehalfOf({ oboAssertion: ev.assertion, scopes: ev.scope });
        } else {
            throw new Error(`unsupported grant ${grant}`);
        }
        results.push({ from_cache: r.fromCache, fingerprint: fingerprint(r.accessToken) });
        blob = app.getTokenCache().serialize();
    }
    return { blob, results };
}

async function find(req) {
    freezeTime(req.now);
    const network = new FakeNetwork(null, req.tenant_id);
    const app = makeApp(req.client_id, req.authority, network);
    const cache = app.getTokenCache();
    cache.deserialize(req.blob);
    const accounts = await cache.getAllAccounts();
    let r = null;
    let error = null;
    try {
        if (req.home_account_id) {
            // the account's profile in the authority's tenant when it is named (a tenant
            // named by domain: the id discovery answers with), else the first
            let account = accounts.find((a) => a.homeAccountId === req.home_account_id && req.tenant_id && a.tenantId === req.tenant_id)
                || accounts.find((a) => a.homeAccountId === req.home_account_id);
            if (!account) {
                const u = new URL(req.authority);
                const tenantId = req.home_account_id.split(".")[1] || u.pathname.split("/")[1];
                account = { homeAccountId: req.home_account_id, environment: u.host, tenantId, username: "", localAccountId: req.home_account_id.split(".")[0] };
            }
            r = await app.acquireTokenSilent({ account, scopes: req.scope });
        } else if (req.assertion) {
            r = await app.acquireTokenOnBehalfOf({ oboAssertion: req.assertion, scopes: req.scope });
        } else {
            r = await app.acquireTokenByClientCredential({ scopes: req.scope });
        }
    } catch (e) {
        error = e.errorCode || e.name || "error";
    }
    const hit = r && r.accessToken && r.fromCache;
    return {
        app: hit ? fingerprint(r.accessToken) : null,
        from_cache: r ? r.fromCache : null,
        error,
        accounts: accounts.map((a) => a.homeAccountId).sort(),
        token_requests: network.tokenRequests,
    };
}

async function findRt(req) {
    // msal-node's silent refresh looks the RT up by account + client id (+ family id);
    // TokenCache has no public RT accessor, so read the in-memory storage it exposes.
    const app = makeApp(req.client_id, req.authority, new FakeNetwork(null));
    const cache = app.getTokenCache();
    cache.deserialize(req.blob);
    const kv = cache.getKVStore();
    const rts = Object.values(kv).filter(
        (e) => e && e.credentialType === "RefreshToken" && e.homeAccountId === req.home_account_id && e.clientId === req.client_id,
    );
    return { search: rts.length ? fingerprint(rts[0].secret) : null, count: rts.length };
}

async function main() {
    const cmd = process.argv[2];
    const cmds = { write, find, find_rt: findRt };
    if (cmd === "version") {
        process.stdout.write(JSON.stringify({ "msal-node": msalVersion }) + "\n");
        return;
    }
    if (!cmds[cmd]) {
        console.error("usage: msal_node.mjs write|find|find_rt|version < request.json");
        process.exit(2);
    }
    const req = JSON.parse(readFileSync(0, "utf8"));
    const out = await cmds[cmd](req);
    process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
    console.error(`msal_node.mjs: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
});
