// Calling `tokencache serve` from Node (18+) with the built-in fetch.
//
//   TOKENCACHE_URL=http://127.0.0.1:8707 node authorization_header.mjs orders
//   INCOMING_TOKEN=eyJ... node authorization_header.mjs orders-obo   # on-behalf-of API
//
// Prints what it got (source, expiry, the header's length), never the token itself.
// Set TOKENCACHE_KEY when the server is configured with a caller key. INCOMING_TOKEN is the
// bearer token your service received; serve validates it ([inbound]) before anything else:
// a forged, expired or foreign one is `401 invalid_token`.

const BASE = process.env.TOKENCACHE_URL ?? 'http://127.0.0.1:8707';

export class TokenServiceError extends Error {
  constructor(status, error, description) {
    super(`${status} ${error}: ${description}`);
    Object.assign(this, { status, error, description });
  }
}

/** The Authorization header value for `api`, and the whole answer. */
export async function authorizationHeader(api, { incomingToken, scopes, forceRefresh } = {}) {
  const url = new URL(`/v1/authorization-header/${encodeURIComponent(api)}`, BASE);
  if (scopes) url.searchParams.set('scopes', scopes.join(' '));
  if (forceRefresh) url.searchParams.set('force_refresh', 'true');
  const headers = {};
  // on-behalf-of: forward the token the caller sent us
  if (incomingToken) headers.Authorization = `Bearer ${incomingToken}`;
  if (process.env.TOKENCACHE_KEY) headers['X-Tokencache-Key'] = process.env.TOKENCACHE_KEY;
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  const body = await response.json();
  if (!response.ok) throw new TokenServiceError(response.status, body.error, body.error_description);
  return { header: body.authorization_header, answer: body };
}

const api = process.argv[2] ?? 'orders';
try {
  const { header, answer } = await authorizationHeader(api, { incomingToken: process.env.INCOMING_TOKEN });
  // Use it: await fetch('https://orders.example/...', { headers: { Authorization: header } })
  const scheme = header.split(' ', 1)[0];
  console.log(`source: ${answer.source}`);
  console.log(`expires_on: ${answer.expires_on}`);
  console.log(`header: ${scheme} <${header.length - scheme.length - 1} characters>`);
} catch (e) {
  console.error(e instanceof TokenServiceError ? `error: ${e.status} ${e.error}` : `error: ${e.message}`);
  process.exitCode = 1;
}
