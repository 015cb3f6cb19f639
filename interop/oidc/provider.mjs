// The OpenID provider the acquisition tests run against (crates/tokencache/tests/acquire_oidc.rs):
// oidc-provider (pinned in package.json / package-lock.json), on 127.0.0.1:$PORT, plain http.
// Started and stopped by testkit::OidcProvider; installed by interop/setup.sh into .peers/oidc.
//
// Environment:
//   PORT            the port (required)
//   ACCESS_TTL      access-token lifetime in seconds (default 3600)
//   REFRESH_TTL     refresh-token lifetime in seconds (default 86400)
//   ROTATE          "0" turns refresh-token rotation off (default on: reuse revokes the grant)
//   REFRESH_IN      when set, token responses carry refresh_in = this many seconds (Entra's hint)
//   ISSUER_PATH     when set (e.g. /tenant1/v2.0), the issuer is http://127.0.0.1:$PORT$ISSUER_PATH and
//                   every provider route is under that path, as Entra's are (test controls stay at /__test)
//   REALMS          when set (e.g. /realms/a,/realms/b): one provider per path on the one port, each its
//                   own issuer http://127.0.0.1:$PORT$path with its own keys, clients of the same ids and
//                   secrets, own stats and faults (as Keycloak's realms); every route of a realm,
//                   test controls included, is under its path (/__test without a path: the first realm's)
//   ISSUER_HOST     the host the issuers name (default 127.0.0.1): e.g. localhost, to serve a discovery
//                   document whose issuer is not the URL it was fetched from
//   CLIENT_CERT_PEM a PEM certificate file: client app-cert authenticates by private_key_jwt with its key
//
// Clients (all confidential, scopes openid profile offline_access api.read api.write):
//   app       client_secret_basic, secret "app-secret"; every grant below
//   app-post  client_secret_post,  secret "post-secret"; client_credentials
//   app-jwt   private_key_jwt (key pair made at start; private key at /__test/client-key)
//   app-cert  private_key_jwt with the key of CLIENT_CERT_PEM's certificate (when set); client_credentials
// Grants: client_credentials, authorization_code (+ refresh_token), and two custom ones:
//   urn:ietf:params:oauth:grant-type:jwt-bearer with requested_token_use=on_behalf_of (Entra OBO)
//   urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693)
//   (both return a refresh token when offline_access is asked, as Entra's OBO does)
// Access tokens are JWTs for the resource urn:api.
//
// Test controls (never part of a real provider):
//   GET  /__test/stats                 {"token_requests": n, "by_grant": {...}, "errors": {...},
//                                      "arrived": {"token": n, "discovery": n}, "claims": [...]} (arrived:
//                                      counted when a request comes in, before any fault holds it; claims:
//                                      the claims parameter of each served token request that had one)
//   POST /__test/fault?kind=K&times=N  the next N token requests fail: K = 500 | 429 (Retry-After:
//                                      &retry_after=S) | malformed (200 with broken JSON) | slow (served) |
//                                      html (404 with an HTML page that echoes the request) |
//                                      consume500 (served — a refresh token or code is used up — and the
//                                      answer replaced by a 500) | no_id_token / no_access_token (served
//                                      without that field);
//                                      &ms=M holds each of them M ms first (&after=1: after serving it,
//                                      before answering); &path=discovery: the fault is for the next
//                                      discovery requests instead (only slow)
//   GET  /__test/mint?sub=S&aud=A      a user access token for S (audience A), signed by the provider,
//                                      as a web API receives it (the incoming assertion of OBO); it
//                                      carries oid=S and tid=tenant1 unless &plain=1 (iss and sub only,
//                                      as Keycloak's, Okta's or Auth0's tokens)
//   GET  /__test/client-key            app-jwt's private key (PKCS#8 PEM) and its kid
//   GET  /__test/client-assertion?exp=S {"assertion"}: a client assertion for app-jwt (new jti), expiring
//                                      in S seconds (default 600; negative: already expired)
//   POST /__test/active (body: a token) {"active", "sub", "client_id", "scope"}: an access token for
//                                      urn:api signed by this provider, unexpired
// Interactions log in whoever the authorization request names in login_hint (default "user1")
// and grant every requested scope: no pages, the redirect goes straight back with a code.
// As OIDC Core §11 says, offline_access (a refresh token) needs prompt=consent.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';
import { generateKeyPair, exportJWK, exportPKCS8, importX509, jwtVerify, SignJWT } from 'jose';

const port = Number(process.env.PORT);
if (!port) {
  console.error('provider.mjs: PORT is required');
  process.exit(2);
}
const issuerPath = (process.env.ISSUER_PATH || '').replace(/\/+$/, '');
const issuerHost = process.env.ISSUER_HOST || '127.0.0.1';
const realms = (process.env.REALMS || '').split(',').map((r) => r.trim().replace(/\/+$/, '')).filter(Boolean);
const accessTtl = Number(process.env.ACCESS_TTL || 3600);
const refreshTtl = Number(process.env.REFRESH_TTL || 86400);
const rotate = process.env.ROTATE !== '0';
const refreshIn = process.env.REFRESH_IN ? Number(process.env.REFRESH_IN) : undefined;
const RESOURCE = 'urn:api';
const API_SCOPES = 'api.read api.write';
const OBO = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// One provider (one issuer): its keys, clients, grants and test controls.
async function makeProvider(issuer) {
const mountPath = new URL(issuer).pathname.replace(/\/+$/, '');
// The provider's signing key, and the private_key_jwt client's key.
const signing = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(signing.privateKey)), kid: 'sig-1', alg: 'RS256', use: 'sig' };
const clientKey = await generateKeyPair('RS256', { extractable: true });
const clientPublicJwk = { ...(await exportJWK(clientKey.publicKey)), kid: 'client-key-1', alg: 'RS256', use: 'sig' };
const clientPrivatePem = await exportPKCS8(clientKey.privateKey);
// The certificate client's public key, from the test's certificate file.
const certClients = [];
if (process.env.CLIENT_CERT_PEM) {
  const pem = readFileSync(process.env.CLIENT_CERT_PEM, 'utf8');
  const cert = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/)[0];
  const jwk = await exportJWK(await importX509(cert, 'RS256', { extractable: true }));
  // Known by its certificate's thumbprints, as Entra knows a certificate credential: the
  // kid is the SHA-1 thumbprint (x5t), which is what the client's assertion names.
  const der = Buffer.from(cert.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  jwk.kid = createHash('sha1').update(der).digest('base64url');
  jwk['x5t#S256'] = createHash('sha256').update(der).digest('base64url');
  certClients.push({
    client_id: 'app-cert',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [{ ...jwk, alg: 'RS256', use: 'sig' }] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: `openid profile offline_access api.read api.write`,
  });
}

const resourceInfo = () => ({
  scope: API_SCOPES,
  audience: RESOURCE,
  accessTokenFormat: 'jwt',
  accessTokenTTL: accessTtl,
});
const allScopes = `openid profile offline_access ${API_SCOPES}`;
const allGrants = ['client_credentials', 'authorization_code', 'refresh_token', OBO, EXCHANGE];

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'app',
      client_secret: 'app-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: allGrants,
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/callback'],
      scope: allScopes,
    },
    {
      client_id: 'app-post',
      client_secret: 'post-secret',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: allScopes,
    },
    {
      client_id: 'app-jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'RS256',
      jwks: { keys: [clientPublicJwk] },
      grant_types: allGrants,
      response_types: [],
      redirect_uris: [],
      scope: allScopes,
    },
    ...certClients,
  ],
  jwks: { keys: [signingJwk] },
  // api.admin is known but no client may ask for it: the "unknown scope" error path (invalid_scope).
  scopes: ['openid', 'profile', 'offline_access', 'api.read', 'api.write', 'api.admin'],
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
  cookies: { keys: ['tokencache-test-cookie-key'] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== RESOURCE) throw new errors.InvalidTarget();
        return resourceInfo();
      },
    },
  },
  // A function, not a constant: a constant would override the resource's accessTokenTTL.
  ttl: {
    AccessToken: () => accessTtl,
    ClientCredentials: () => accessTtl,
    RefreshToken: () => refreshTtl,
    IdToken: () => 3600,
    AuthorizationCode: () => 60,
    Interaction: () => 600,
    Session: () => 86400,
    Grant: () => 86400,
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => rotate,
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, name: id, preferred_username: `${id}@example.test` }),
  }),
  // under the provider's own path (ISSUER_PATH, a realm's), where its routes are
  interactions: { url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});

// ---- counting -----------------------------------------------------------------------------
const stats = { token_requests: 0, by_grant: {}, errors: {}, faults: 0, arrived: { token: 0, discovery: 0 }, claims: [] };
const bump = (map, k) => { map[k] = (map[k] || 0) + 1; };
provider.on('grant.success', (ctx) => {
  stats.token_requests += 1;
  bump(stats.by_grant, ctx.oidc.params.grant_type);
  if (ctx.oidc.body && ctx.oidc.body.claims) stats.claims.push(String(ctx.oidc.body.claims));
});
provider.on('grant.error', (ctx, err) => {
  stats.token_requests += 1;
  bump(stats.by_grant, ctx.oidc?.params?.grant_type || 'unknown');
  bump(stats.errors, err.error || 'server_error');
});

// ---- test controls and interactions ---------------------------------------------------------
const faults = [];
const discoveryFaults = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/openid-configuration') {
    stats.arrived.discovery += 1;
    const f = discoveryFaults.shift();
    if (f) {
      stats.faults += 1;
      await sleep(f.ms);
    }
    await next();
    return;
  }
  if (ctx.path === '/__test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/__test/fault' && ctx.method === 'POST') {
    const q = ctx.query;
    const times = Number(q.times || 1);
    const queue = q.path === 'discovery' ? discoveryFaults : faults;
    for (let i = 0; i < times; i += 1) {
      queue.push({ kind: q.kind, retryAfter: q.retry_after, ms: Number(q.ms || 0), after: q.after === '1' });
    }
    ctx.body = { queued: queue.length };
    return;
  }
  if (ctx.path === '/__test/mint') {
    const sub = ctx.query.sub || 'user1';
    const aud = ctx.query.aud || 'app';
    const ttl = Number(ctx.query.ttl || 3600);
    const now = Math.floor(Date.now() / 1000);
    const extra = ctx.query.plain === '1' ? {} : { oid: sub, tid: 'tenant1' };
    const token = await new SignJWT({ scp: 'access_as_user', ...extra, azp: 'spa' })
      .setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'at+jwt' })
      .setIssuer(issuer).setSubject(sub).setAudience(aud)
      .setIssuedAt(now).setExpirationTime(now + ttl).setJti(`mint-${now}-${Math.random()}`)
      .sign(signing.privateKey);
    ctx.body = { access_token: token };
    return;
  }
  if (ctx.path === '/__test/active' && ctx.method === 'POST') {
    // A JWT access token this provider issued: signature, issuer and expiry checked, as
    // the resource server would (JWT access tokens are not stored by oidc-provider, so
    // revoking their grant does not reach them; grant liveness is tested by refreshing).
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const token = Buffer.concat(chunks).toString().trim();
    let active = false;
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(token, signing.publicKey, { issuer, audience: RESOURCE }));
      active = true;
    } catch {
      active = false;
    }
    ctx.body = { active, sub: claims?.sub, client_id: claims?.client_id, scope: claims?.scope };
    return;
  }
  if (ctx.path === '/__test/client-assertion') {
    // A client assertion for app-jwt (a new jti each time), as a platform writes into a
    // workload identity token file. &exp=S: seconds from now (may be negative).
    const now = Math.floor(Date.now() / 1000);
    const exp = now + Number(ctx.query.exp || 600);
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: clientPublicJwk.kid })
      .setIssuer('app-jwt').setSubject('app-jwt').setAudience(`${issuer}/token`)
      .setIssuedAt(now).setExpirationTime(exp).setJti(`assertion-${now}-${Math.random()}`)
      .sign(clientKey.privateKey);
    ctx.body = { assertion };
    return;
  }
  if (ctx.path === '/__test/client-key') {
    ctx.body = { kid: clientPublicJwk.kid, pem: clientPrivatePem };
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') stats.arrived.token += 1;
  if (ctx.path === '/token' && ctx.method === 'POST' && faults.length) {
    const f = faults.shift();
    stats.faults += 1;
    if (f.ms && !f.after) await sleep(f.ms);
    const served = ['consume500', 'no_id_token', 'no_access_token'];
    if (served.includes(f.kind) || (f.kind === 'slow' && f.after)) {
      // served (a refresh token or a code is used up), then the answer is changed or held
      await next();
      if (f.ms && f.after) await sleep(f.ms);
      if (f.kind === 'consume500') {
        ctx.status = 500;
        ctx.type = 'application/json';
        ctx.body = { error: 'server_error', error_description: 'injected fault after serving' };
      } else if (f.kind === 'no_id_token' && ctx.body && typeof ctx.body === 'object') {
        const { id_token: _dropped, ...rest } = ctx.body;
        ctx.body = rest;
      } else if (f.kind === 'no_access_token' && ctx.body && typeof ctx.body === 'object') {
        const { access_token: _dropped, ...rest } = ctx.body;
        ctx.body = rest;
      }
      return;
    }
    if (f.kind === 'slow') {
      // served normally, late
    } else if (f.kind === '429') {
      ctx.status = 429;
      if (f.retryAfter !== undefined) ctx.set('Retry-After', String(f.retryAfter));
      ctx.body = { error: 'temporarily_unavailable', error_description: 'slow down' };
      return;
    } else if (f.kind === 'html') {
      // a gateway's or a misrouted realm's page, echoing the request as some do
      ctx.status = 404;
      ctx.type = 'text/html';
      ctx.body = `<html><head><title>404 Not Found</title></head><body><h1>Realm does not exist</h1><p>request: ${ctx.get('authorization')} client_secret=app-secret</p></body></html>`;
      return;
    } else if (f.kind === 'malformed') {
      ctx.status = 200;
      ctx.type = 'application/json';
      ctx.body = '{"access_token": "abc", "expires_in": ';
      return;
    } else {
      ctx.status = 500;
      ctx.body = { error: 'server_error', error_description: 'injected fault' };
      return;
    }
  }
  if (ctx.path === '/token' && refreshIn !== undefined) {
    await next();
    if (ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && ctx.body.expires_in) {
      ctx.body = { ...ctx.body, refresh_in: refreshIn };
    }
    return;
  }
  const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
  if (m && ctx.method === 'GET') {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { params, session } = details;
    const accountId = session?.accountId || params.login_hint || 'user1';
    const grant = new provider.Grant({ accountId, clientId: params.client_id });
    // Without a resource parameter the API scopes count as OIDC scopes of the request:
    // grant them both ways.
    grant.addOIDCScope(String(params.scope || 'openid'));
    grant.addResourceScope(RESOURCE, API_SCOPES);
    const grantId = await grant.save();
    const to = await provider.interactionResult(ctx.req, ctx.res,
      { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
    ctx.redirect(to);
    return;
  }
  await next();
});

// ---- on-behalf-of and token exchange ---------------------------------------------------------
async function verifyUserToken(token, audience) {
  try {
    const { payload } = await jwtVerify(token, signing.publicKey, { issuer, audience });
    if (!payload.sub) throw new Error('no sub');
    return payload;
  } catch (e) {
    throw new errors.InvalidGrant(`the incoming token is not valid: ${e.code || e.message}`);
  }
}

async function mint(ctx, sub, grantLabel) {
  const { client, params } = ctx.oidc;
  const rs = new provider.ResourceServer(RESOURCE, resourceInfo());
  const requested = String(params.scope || '').split(' ').filter(Boolean);
  const allowed = rs.scopes;
  const bad = requested.filter((s) => !allowed.has(s) && s !== 'offline_access');
  if (bad.length) throw new errors.InvalidScope('requested scope is not allowed', bad.join(' '));
  const scope = requested.filter((s) => allowed.has(s)).join(' ');
  const token = new provider.AccessToken({ accountId: sub, client, scope, gty: grantLabel });
  token.resourceServer = rs;
  const value = await token.save();
  const body = { access_token: value, token_type: 'Bearer', expires_in: token.expiration, scope };
  if (requested.includes('offline_access')) {
    // As Entra does for OBO with offline_access: a refresh token of its own grant, so that
    // a long-running process can go on after the incoming token expired.
    const grant = new provider.Grant({ accountId: sub, clientId: client.clientId });
    grant.addOIDCScope('offline_access');
    grant.addResourceScope(RESOURCE, scope);
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({
      accountId: sub, client, grantId, gty: grantLabel, resource: RESOURCE,
      scope: `offline_access ${scope}`,
    });
    body.refresh_token = await rt.save();
  }
  return body;
}

provider.registerGrantType(OBO, async (ctx) => {
  const { params, client } = ctx.oidc;
  if (params.requested_token_use !== 'on_behalf_of') {
    throw new errors.InvalidRequest('requested_token_use must be on_behalf_of');
  }
  const claims = await verifyUserToken(params.assertion, client.clientId);
  ctx.body = await mint(ctx, claims.sub, 'obo');
}, ['assertion', 'requested_token_use', 'scope']);

provider.registerGrantType(EXCHANGE, async (ctx) => {
  const { params, client } = ctx.oidc;
  if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.subject_token_type)) {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  const claims = await verifyUserToken(params.subject_token, client.clientId);
  const body = await mint(ctx, claims.sub, 'token-exchange');
  ctx.body = { ...body, issued_token_type: ACCESS_TOKEN_TYPE };
}, ['subject_token', 'subject_token_type', 'scope', 'audience', 'requested_token_type', 'actor_token', 'actor_token_type']);

return provider;
}

// Served under ISSUER_PATH (or each realm's path) when set: the provider sees the path without it
// (and req.originalUrl with it, which oidc-provider uses to build its URLs); test controls answer
// at /__test either way (the first realm's, without a realm path).
const mounts = [];
for (const path of (realms.length ? realms : [issuerPath])) {
  const provider = await makeProvider(`http://${issuerHost}:${port}${path}`);
  mounts.push({ path, callback: provider.callback() });
}
const server = http.createServer((req, res) => {
  for (const { path, callback } of mounts) {
    if (path && (req.url === path || req.url.startsWith(`${path}/`) || req.url.startsWith(`${path}?`))) {
      req.originalUrl = req.url;
      req.url = req.url.slice(path.length) || '/';
      callback(req, res);
      return;
    }
  }
  mounts[0].callback(req, res);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ready on http://${issuerHost}:${port}${mounts.map((m) => m.path).join(',')}`);
});
