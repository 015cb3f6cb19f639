// Calling an API through `tokencache serve` from Node (18+, built-in fetch): serve acquires
// the API's token (from its cache, or the provider) and calls the API's configured
// `base_url` itself, so this program never holds a token.
//
//   TOKENCACHE_URL=http://127.0.0.1:8707 node downstream.mjs orders items/42
//   INCOMING_TOKEN=eyJ... node downstream.mjs orders-obo me    # on-behalf-of API
//   node downstream.mjs orders items '{"item":"book"}'          # POST a JSON body
//
// `/v1/downstream/{api}/{path}` is a pass-through: the API's status, headers and body come
// back as they are (a redirect is returned, not followed). Prints the status, the content
// type and the body. Set TOKENCACHE_KEY when the server is configured with a caller key.

const BASE = process.env.TOKENCACHE_URL ?? 'http://127.0.0.1:8707';

/** The API's answer to `method` `path` (a fetch Response). */
export async function callApi(api, path = '', { method = 'GET', body, incomingToken } = {}) {
  const url = new URL(`/v1/downstream/${encodeURIComponent(api)}${path ? `/${path.replace(/^\/+/, '')}` : ''}`, BASE);
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  // on-behalf-of: forward the token the caller sent us (serve exchanges it; the API gets
  // the exchanged token, never this one)
  if (incomingToken) headers.Authorization = `Bearer ${incomingToken}`;
  if (process.env.TOKENCACHE_KEY) headers['X-Tokencache-Key'] = process.env.TOKENCACHE_KEY;
  return fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'manual', // the API's redirect is its answer
    signal: AbortSignal.timeout(30_000),
  });
}

const [api = 'orders', path = '', json] = process.argv.slice(2);
try {
  const body = json === undefined ? undefined : JSON.parse(json);
  const response = await callApi(api, path, {
    method: body === undefined ? 'GET' : 'POST',
    body,
    incomingToken: process.env.INCOMING_TOKEN,
  });
  console.log(`status: ${response.status}`);
  console.log(`content-type: ${response.headers.get('content-type')}`);
  console.log(`body: ${await response.text()}`);
  if (response.status >= 400) process.exitCode = 1;
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
}
