#!/usr/bin/env bash
# Try `tokencache serve` on this machine, with no cloud tenant: starts the OpenID provider the
# tests use (oidc-provider, pinned in interop/oidc, installed into .peers/ if missing), then
# `tokencache serve` with a working configuration (two APIs: an app token and an on-behalf-of
# one, on an embedded store in a temporary folder), and prints the curl lines to try: an app
# token, an OBO token for a user token the provider mints, and that user's sign-out.
# Ctrl-C stops both and removes the temporary folder.
#
#   bash scripts/try-serve.sh                              # builds tokencache first (cargo)
#   TOKENCACHE_BIN=/path/to/tokencache bash scripts/try-serve.sh
#
# Needs node >= 20 and npm (for the provider) and curl (for the lines it prints).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
peers="${TOKENCACHE_PEERS_DIR:-$repo/.peers}"

for tool in node curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "try-serve.sh: $tool is needed" >&2; exit 1; }
done
TOKENCACHE_PEERS_DIR="$peers" bash interop/oidc/setup.sh >/dev/null

bin="${TOKENCACHE_BIN:-}"
if [ -z "$bin" ]; then
    echo "try-serve.sh: building tokencache (cargo build -p tokencache-cli)" >&2
    cargo build -q -p tokencache-cli
    bin="${CARGO_TARGET_DIR:-$repo/target}/debug/tokencache"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tokencache-try.XXXXXX")"
provider_pid=""
serve_pid=""
cleanup() {
    trap - EXIT INT TERM
    set +e
    for pid in $serve_pid $provider_pid; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$work"
    echo "try-serve.sh: stopped" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until FILE has a line starting with TEXT (or the process PID ends); prints that line.
wait_for() {
    local file="$1" text="$2" pid="$3"
    for _ in $(seq 1 600); do
        if grep -q "^$text" "$file" 2>/dev/null; then
            grep -m1 "^$text" "$file"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "try-serve.sh: no \"$text\" from $file:" >&2
    cat "$file" >&2
    return 1
}

# The provider on a free loopback port (the system picks it).
op_port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
PORT="$op_port" node "$peers/oidc/provider.mjs" >"$work/provider.log" 2>&1 &
provider_pid=$!
wait_for "$work/provider.log" "oidc-provider ready on" "$provider_pid" >/dev/null
issuer="http://127.0.0.1:$op_port"
# A provider that is not Entra names its users {sub}.{issuer key} (docs/design.md §4.7): the
# key is the first 22 characters of base64url(SHA-256(issuer)).
issuer_key="$(node -e 'console.log(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url").slice(0,22))' "$issuer")"

cat >"$work/tokencache.toml" <<EOF
listen = "127.0.0.1:0"                  # a free port; serve prints the one it took
store = "redb://$work/serve.redb"      # embedded; leave it out for the default file

# The tokens callers forward (for the OBO API) are validated: the provider's keys, its
# issuer, and the audience the provider mints them for.
[inbound]
issuer = "$issuer"
audiences = ["app"]

# The provider's test client "app" (secret "app-secret") and its API scope.
[apis.app-token]
authority = "$issuer"
client_id = "app"
client_secret_env = "TRY_APP_SECRET"
scopes = ["api.read"]

[apis.obo]
authority = "$issuer"
client_id = "app"
client_secret_env = "TRY_APP_SECRET"
scopes = ["api.read"]
on_behalf_of = true
EOF

TRY_APP_SECRET=app-secret "$bin" serve --config "$work/tokencache.toml" >"$work/serve.log" 2>&1 &
serve_pid=$!
line="$(wait_for "$work/serve.log" "tokencache serve: listening on " "$serve_pid")"
addr="${line#tokencache serve: listening on }"

cat <<EOF
tokencache serve is listening on http://$addr (config: $work/tokencache.toml),
with the test OpenID provider at $issuer. Try:

# an app token (client credentials); run it twice: "source" goes from "provider" to "cache"
curl -s http://$addr/v1/authorization-header/app-token

# on behalf of a user: the provider mints alice's token, as a web API would receive it
user_token=\$(curl -s '$issuer/__test/mint?sub=alice&aud=app' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s -H "Authorization: Bearer \$user_token" http://$addr/v1/authorization-header/obo

# what serve makes of alice's token (a forged or expired one gets 401 invalid_token)
curl -s -H "Authorization: Bearer \$user_token" http://$addr/v1/validate

# alice signs out with her own token: her OBO tokens go too
curl -s -X POST -H "Authorization: Bearer \$user_token" -H 'Content-Type: application/json' -d '{}' http://$addr/v1/sign-out

Press Ctrl-C to stop.
EOF

# Until Ctrl-C (or one of the two ends).
while kill -0 "$serve_pid" 2>/dev/null && kill -0 "$provider_pid" 2>/dev/null; do
    sleep 0.5
done
echo "try-serve.sh: a process ended:" >&2
tail -5 "$work/serve.log" "$work/provider.log" >&2
exit 1
