#!/usr/bin/env bash
# Installs the real MSAL peers used by crates/tokencache/tests/interop_{python,node,fixtures}.rs:
#   - MSAL Python (pinned in interop/requirements.txt) into $PEERS/venv
#   - msal-node   (pinned in interop/package.json + package-lock.json) into $PEERS/node_modules
# PEERS is $TOKENCACHE_PEERS_DIR, or <repo>/.peers when unset.
# Idempotent: when the pins have not changed since the last run it does nothing.
# Prints one line saying what it did; fails with a clear message when a tool is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
peers="${TOKENCACHE_PEERS_DIR:-$repo/.peers}"

missing=()
for tool in python3 node npm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "interop/setup.sh: missing required tool(s): ${missing[*]} (install python3 with venv support, node >= 20 and npm)" >&2
    exit 1
fi

mkdir -p "$peers"
log="$peers/setup.log"
: >"$log"
did=()

# ---- MSAL Python -----------------------------------------------------------
py_stamp="$peers/venv/.tokencache-requirements"
if [[ -x "$peers/venv/bin/python" ]] && cmp -s "$here/requirements.txt" "$py_stamp"; then
    py_state="venv up to date"
else
    if [[ ! -x "$peers/venv/bin/python" ]]; then
        if ! python3 -m venv "$peers/venv" >>"$log" 2>&1; then
            echo "interop/setup.sh: 'python3 -m venv' failed (on Debian: apt-get install python3-venv); see $log" >&2
            exit 1
        fi
    fi
    if ! "$peers/venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" >>"$log" 2>&1; then
        echo "interop/setup.sh: pip install -r interop/requirements.txt failed; see $log" >&2
        exit 1
    fi
    cp "$here/requirements.txt" "$py_stamp"
    py_state="venv installed ($(grep -E '^[a-zA-Z]' "$here/requirements.txt" | tr '\n' ' ' | sed 's/ $//'))"
fi
did+=("$py_state")

# ---- msal-node ---------------------------------------------------------------
node_stamp="$peers/node_modules/.tokencache-package-lock.json"
if [[ -d "$peers/node_modules/@azure/msal-node" ]] && cmp -s "$here/package-lock.json" "$node_stamp"; then
    node_state="node_modules up to date"
else
    cp "$here/package.json" "$here/package-lock.json" "$peers/"
    if ! (cd "$peers" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >>"$log" 2>&1; then
        echo "interop/setup.sh: npm ci of interop/package-lock.json failed; see $log" >&2
        exit 1
    fi
    cp "$here/package-lock.json" "$node_stamp"
    node_state="node_modules installed (@azure/msal-node $(node -p "require('$peers/node_modules/@azure/msal-node/package.json').version"))"
fi
did+=("$node_state")

echo "interop/setup.sh: peers in $peers: ${did[0]}; ${did[1]}"
