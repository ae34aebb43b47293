#!/usr/bin/env bash
# ratelimit-overshoot.sh — how far two keygate replicas sharing one limit
# through Redis go over it under load (the worst case of the local-first
# design: both replicas saturated on the same bucket at once).
#
# Usage: scripts/ratelimit-overshoot.sh   (after cargo build --release --bin keygate)
#   LIMIT [5000]  WINDOW [60s]  SYNC [50ms]  DURATION [5s]  CONNS [32]
#
# Starts redis-server and two keygate replicas (builtin:echo, one ratelimit
# policy keyed on the client IP, so every request shares one bucket), waits
# for the start of a window, runs wrk against both replicas at once, and
# prints what each admitted (2xx) and the overshoot over LIMIT.
set -euo pipefail

LIMIT=${LIMIT:-5000}
WINDOW=${WINDOW:-60s}
SYNC=${SYNC:-50ms}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
REDIS_PORT=${REDIS_PORT:-16398}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYGATE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/keygate
[[ -x $KEYGATE_BIN ]] || { echo "build it first: cargo build --release --bin keygate" >&2; exit 1; }
command -v wrk >/dev/null && command -v redis-server >/dev/null || { echo "needs wrk and redis-server" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/keygate-overshoot.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)

for i in 1 2; do
    mkdir -p "$TMP/r$i"
    cat >"$TMP/r$i/keygate.yaml" <<YAML
listen:
  http: "127.0.0.1:1818$i"
  admin: "127.0.0.1:1918$i"
  threads: 1
state:
  dir: state
  redis: "redis://127.0.0.1:$REDIS_PORT"
  sync_interval: $SYNC
deployments:
  - id: dep
    instances: ["builtin:echo"]
    policies:
      - id: shared
        ratelimit: {limit: $LIMIT, window: $WINDOW, identifiers: [remote_ip: {}]}
routes:
  - host: localhost
    deployment: dep
YAML
    RUST_LOG=warn "$KEYGATE_BIN" run --config "$TMP/r$i/keygate.yaml" >"$TMP/r$i/log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2; do
    for _ in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:1918$i/readyz") == 200 ]] && break
        sleep 0.1
    done
done

# Start right after a window boundary, so the run stays inside one window.
window_ms=$(( $(sed 's/s$//' <<<"$WINDOW") * 1000 ))
now_ms=$(date +%s%3N)
sleep "$(awk -v w="$window_ms" -v n="$now_ms" 'BEGIN { printf "%.3f", (w - n % w) / 1000 + 0.05 }')"

wrk_pids=()
for i in 1 2; do
    wrk -t1 -c"$CONNS" -d"$DURATION" -H 'Host: localhost' "http://127.0.0.1:1818$i/" >"$TMP/wrk$i.txt" &
    wrk_pids+=($!)
done
wait "${wrk_pids[@]}"

total=0
for i in 1 2; do
    requests=$(awk '/requests in/ {print $1}' "$TMP/wrk$i.txt")
    rejected=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$TMP/wrk$i.txt")
    admitted=$((requests - ${rejected:-0}))
    total=$((total + admitted))
    echo "replica $i: $requests requests, $admitted admitted"
done
echo "limit $LIMIT per $WINDOW, sync every $SYNC: $total admitted in all, overshoot $((total > LIMIT ? total - LIMIT : 0)) ($(awk -v t="$total" -v l="$LIMIT" 'BEGIN { printf "%.1f", (t - l) * 100 / l }')%)"
