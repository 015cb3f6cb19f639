#!/usr/bin/env bash
# Benchmark of `tokencache serve`, side by side in one run with wrk (Debian package, installed
# here when missing): cache hits of GET /v1/authorization-header/{api} against the same
# server's GET /healthz, requests per second and p99: an app token, and an on-behalf-of token
# whose caller's bearer [inbound] validates (signature, issuer, audience, expiry: checked at
# the first request of the token, then remembered until it expires). Client and server share the machine's
# cores, so compare the two rows, not absolute figures across machines.
#
#   scripts/bench-serve.sh                 # 10 s per endpoint, 32 connections
#   DURATION=30s CONNECTIONS=64 scripts/bench-serve.sh
#
# Real peers, on loopback, started and stopped here: a redis-server (the shared L2), the
# oidc-provider of the tests (interop/oidc, one client-credentials token fills the cache).
# The server runs the release build. Target: cache hits with a validated bearer reach at
# least 70 % of /healthz.
#
# Downstream calls (issue 23): a second tokencache serve stands for a local HTTP API (its
# /healthz, in memory); wrk calls it directly, then through the first server's pass-through
# GET /v1/downstream/orders (token from the cache, the call, the answer streamed back), in
# the same run. Reported: the latency serve adds at p50 and p99 (measured with one
# connection, so that queueing does not hide it), and the pass-through's requests per second
# relative to calling the API directly (target >= 60 %).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
# Builds go into the clone's target/ unless CARGO_TARGET_DIR is set (as scripts/test.sh).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"

install_debian() { # tool package
  command -v "$1" >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench-serve.sh: installing $2 (Debian package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null) \
      || { echo "bench-serve.sh: could not install $2; install the Debian package $2" >&2; exit 1; }
  else
    echo "bench-serve.sh: $1 is not on PATH; install the Debian package $2" >&2
    exit 1
  fi
}
install_debian wrk wrk
install_debian redis-server redis-server
bash interop/oidc/setup.sh >/dev/null
cargo build --release -q -p tokencache-cli
bin="$CARGO_TARGET_DIR/release/tokencache"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# waits until file $1 has a line matching $2 (at most 30 s)
wait_line() { for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "bench-serve.sh: no '$2' in $1" >&2; cat "$1" >&2; exit 1; }

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$work" --pidfile "$work/redis.pid" >/dev/null
op_port="$(free_port)"
PORT="$op_port" node "${TOKENCACHE_PEERS_DIR:-$repo/.peers}/oidc/provider.mjs" >"$work/op.log" 2>&1 &
pids+=($!)
wait_line "$work/op.log" "oidc-provider ready"

# the downstream API: another serve's /healthz
cat >"$work/api.toml" <<TOML
store = "memory://"

[apis.unused]
authority = "http://127.0.0.1:$op_port"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
TOML
APP_SECRET=app-secret "$bin" serve --config "$work/api.toml" --listen 127.0.0.1:0 >"$work/api.out" 2>"$work/api.log" &
pids+=($!)
wait_line "$work/api.out" "listening on"
api_addr="$(sed -n 's/^tokencache serve: listening on //p' "$work/api.out")"

cat >"$work/serve.toml" <<TOML
store = "redis://127.0.0.1:$redis_port"

[inbound]
issuer = "http://127.0.0.1:$op_port"
audiences = ["app"]

[apis.orders]
authority = "http://127.0.0.1:$op_port"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
base_url = "http://$api_addr"
relative_path = "healthz"

[apis.orders-obo]
authority = "http://127.0.0.1:$op_port"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
on_behalf_of = true
TOML
APP_SECRET=app-secret "$bin" serve --config "$work/serve.toml" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
wait_line "$work/serve.out" "listening on"
addr="$(sed -n 's/^tokencache serve: listening on //p' "$work/serve.out")"
# a user's token, as a web API receives it; one provider request per API fills the cache
user_token="$(python3 - "$op_port" <<'PY'
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/__test/mint?sub=bench&aud=app"))["access_token"])
PY
)"
python3 - "$addr" "$user_token" <<'PY'
import json, sys, urllib.request
a = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/v1/authorization-header/orders"))
assert a["source"] == "provider", a["source"]
r = urllib.request.Request(f"http://{sys.argv[1]}/v1/authorization-header/orders-obo",
                           headers={"Authorization": f"Bearer {sys.argv[2]}"})
a = json.load(urllib.request.urlopen(r))
assert a["source"] == "provider", a["source"]
PY

run() { # name path [host:port] [header]
  local out
  out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${4:+-H "$4"} "http://${3:-$addr}$2")"
  if grep -q "Non-2xx" <<<"$out"; then echo "bench-serve.sh: $1 had error answers:" >&2; echo "$out" >&2; exit 1; fi
  local rps p99
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
  echo "$1 $rps $p99"
}
wrk -t1 -c"$CONNECTIONS" -d2s "http://$addr/healthz" >/dev/null # warm-up
# /healthz before and after the token routes (the mean is the reference): a machine whose
# load drifts during the run biases neither way
health="$(run healthz /healthz)"
hit="$(run header /v1/authorization-header/orders)"
obo="$(run obo /v1/authorization-header/orders-obo "" "Authorization: Bearer $user_token")"
health2="$(run healthz /healthz)"
direct="$(run direct /healthz "$api_addr")"
through="$(run through /v1/downstream/orders)"
# latency: one connection, no queueing (p50 and p99 of each)
lat() { # path host:port -> "p50 p99" in microseconds
  wrk -t1 -c1 -d"$DURATION" --latency "http://$2$1" | python3 -c '
import re, sys
v = {}
for line in sys.stdin:
    m = re.match(r"\s+(50|99)%\s+([\d.]+)(us|ms|s)", line)
    if m:
        v[m.group(1)] = float(m.group(2)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(3)]
print(round(v["50"]), round(v["99"]))'
}
read -r d_p50 d_p99 <<<"$(lat /healthz "$api_addr")"
read -r t_p50 t_p99 <<<"$(lat /v1/downstream/orders "$addr")"
requests="$(python3 - "$addr" <<'PY'
import sys, urllib.request
m = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read().decode()
print(sum(int(l.split()[-1]) for l in m.splitlines() if l.startswith('tokencache_provider_requests_total{')))
PY
)"
read -r _ h1_rps h_p99 <<<"$health"
read -r _ h2_rps _ <<<"$health2"
h_rps="$(python3 -c "print(f'{($h1_rps + $h2_rps) / 2:.2f}')")"
read -r _ c_rps c_p99 <<<"$hit"
read -r _ o_rps o_p99 <<<"$obo"
read -r _ d_rps d_rps_p99 <<<"$direct"
read -r _ t_rps t_rps_p99 <<<"$through"
ratio="$(python3 -c "print(f'{100 * $t_rps / $d_rps:.0f}')")"
share="$(python3 -c "print(f'{100 * $c_rps / $h_rps:.0f}')")"
obo_share="$(python3 -c "print(f'{100 * $o_rps / $h_rps:.0f}')")"
echo
echo "tokencache serve, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $(nproc) cores shared by client and server"
echo
echo "| endpoint | requests/s | p99 |"
echo "|---|---|---|"
echo "| GET /healthz (mean of $h1_rps before and $h2_rps after) | $h_rps | $h_p99 |"
echo "| GET /v1/authorization-header/orders (cache hit) | $c_rps | $c_p99 |"
echo "| GET /v1/authorization-header/orders-obo (cache hit, validated bearer) | $o_rps | $o_p99 |"
echo "| a local HTTP API, called directly (GET /healthz of a second serve) | $d_rps | $d_rps_p99 |"
echo "| the same API through GET /v1/downstream/orders (token from the cache) | $t_rps | $t_rps_p99 |"
echo
echo "downstream pass-through: $ratio % of the direct calls' requests/s (target >= 60 %);"
echo "latency added by serve (one connection): p50 $((t_p50 - d_p50)) us (direct $d_p50 us, through $t_p50 us), p99 $((t_p99 - d_p99)) us (direct $d_p99 us, through $t_p99 us)"
echo
echo "cache hits with a validated bearer: $obo_share % of /healthz's throughput (target >= 70 %); app cache hits: $share %; provider token requests: $requests"
[ "$requests" = 2 ] || { echo "bench-serve.sh: the hits were not all from the cache" >&2; exit 1; }
