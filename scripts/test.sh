#!/usr/bin/env bash
# The whole test suite: installs what the tests need (redis-server, the MSAL peers),
# then runs every test of the workspace. Works on a fresh machine; quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds go into the clone's target/ (cargo's default), or into CARGO_TARGET_DIR when it is
# set (CI may share one between runs). Nothing is built outside the clone otherwise: the
# platform cache folder holds applications' default stores, not build output.

# redis-server: the Redis and Redis Cluster tests start their own on loopback.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || { echo "test.sh: could not install redis-server; install the Debian package redis-server" >&2; exit 1; }
  else
    echo "test.sh: redis-server is not on PATH; install the Debian package redis-server" >&2
    exit 1
  fi
fi

# MSAL Python and msal-node, pinned, in a local folder (not system-wide).
bash interop/setup.sh
# oidc-provider, pinned, for the acquisition tests (testkit::OidcProvider runs it).
bash interop/oidc/setup.sh

cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
