#!/usr/bin/env bash
# Installs the OpenID provider used by crates/tokencache/tests/acquire_oidc.rs:
#   oidc-provider (pinned in interop/oidc/package.json + package-lock.json) into $PEERS/oidc/node_modules,
#   next to a copy of interop/oidc/provider.mjs (testkit::OidcProvider runs that copy: ESM resolves
#   packages from the script's own folder).
# PEERS is $TOKENCACHE_PEERS_DIR, or <repo>/.peers when unset.
# Idempotent: when the lock file has not changed since the last run it only refreshes the script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
peers="${TOKENCACHE_PEERS_DIR:-$repo/.peers}"
dest="$peers/oidc"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "interop/oidc/setup.sh: missing required tool: $tool (install node >= 20 and npm)" >&2
        exit 1
    fi
done

mkdir -p "$dest"
log="$dest/setup.log"
: >"$log"
stamp="$dest/node_modules/.tokencache-package-lock.json"
if [[ -d "$dest/node_modules/oidc-provider" ]] && cmp -s "$here/package-lock.json" "$stamp"; then
    state="node_modules up to date"
else
    cp "$here/package.json" "$here/package-lock.json" "$dest/"
    if ! (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >>"$log" 2>&1; then
        echo "interop/oidc/setup.sh: npm ci of interop/oidc/package-lock.json failed; see $log" >&2
        exit 1
    fi
    cp "$here/package-lock.json" "$stamp"
    state="node_modules installed (oidc-provider $(node -p "JSON.parse(require('fs').readFileSync('$dest/node_modules/oidc-provider/package.json')).version"))"
fi
cp "$here/provider.mjs" "$dest/provider.mjs.tmp" && mv "$dest/provider.mjs.tmp" "$dest/provider.mjs"
echo "interop/oidc/setup.sh: oidc-provider in $dest: $state"
