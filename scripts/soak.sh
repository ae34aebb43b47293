#!/usr/bin/env bash
# soak.sh — keygate under mixed traffic for a long time, with reloads,
# instance restarts and Redis restarts; prints requests, errors and the
# gateway's RSS over time. Not part of CI.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/soak.sh                    # 10 minutes
#     SOAK_SECONDS=120 scripts/soak.sh   # shorter
#
# What it does:
#   1. cargo build --bin keygate --example bench_upstream (PROFILE=release for
#      optimised binaries; SKIP_BUILD=1 to use what is built)
#   2. starts two bench_upstream instances, a redis-server and keygate with a
#      config that has a rate limit shared through Redis, a logging policy,
#      an API key, and two routes (one with strip_prefix)
#   3. runs $CLIENTS curl loops of mixed requests (GET, POST with a body,
#      keyed and unkeyed, a path that 404s) for $SOAK_SECONDS
#   4. every $RELOAD_EVERY s rewrites the config (hot reload), every
#      $RESTART_EVERY s restarts one instance, every $REDIS_EVERY s restarts Redis
#   5. every 10 s prints: elapsed, requests, 5xx, connection failures, RSS (KiB)
#
# Expected: RSS levels off, 5xx only around instance restarts (one instance
# of two is briefly down: passive ejection steers around it), no connection
# failures to the gateway, and the process alive at the end (exit 1 if not).
# Everything runs on loopback; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECONDS=${SOAK_SECONDS:-600}
CLIENTS=${CLIENTS:-8}
RELOAD_EVERY=${RELOAD_EVERY:-20}
RESTART_EVERY=${RESTART_EVERY:-45}
REDIS_EVERY=${REDIS_EVERY:-70}
PROFILE=${PROFILE:-debug}
SKIP_BUILD=${SKIP_BUILD:-0}
KG_HTTP=${KG_HTTP:-127.0.0.1:28080}
KG_ADMIN=${KG_ADMIN:-127.0.0.1:29901}
UP_A=${UP_A:-127.0.0.1:29101}
UP_B=${UP_B:-127.0.0.1:29102}
REDIS_PORT=${REDIS_PORT:-29379}

if [[ $SKIP_BUILD != 1 ]]; then
    flag=(); [[ $PROFILE == release ]] && flag=(--release)
    timeout 3600 cargo build "${flag[@]}" --bin keygate --example bench_upstream
fi
BIN=target/$PROFILE

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}" ${UPA_PID:-} ${UPB_PID:-} ${REDIS_PID:-}; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

start_upstream() { "$BIN/examples/bench_upstream" "$1" >/dev/null 2>&1 & echo $!; }
start_redis() { redis-server --port "$REDIS_PORT" --save '' --appendonly no >/dev/null 2>&1 & echo $!; }

UPA_PID=$(start_upstream "$UP_A")
UPB_PID=$(start_upstream "$UP_B")
REDIS_PID=$(start_redis)

write_config() { # $1: a value that changes on every reload
    cat >"$tmp/keygate.yaml.tmp" <<YAML
listen: {http: "$KG_HTTP", admin: "$KG_ADMIN", threads: 2}
state: {dir: "$tmp/state", redis: "redis://127.0.0.1:$REDIS_PORT"}
request_log: {sink: "$tmp/requests.log"}
keyspaces:
  - {id: ks, name: soak, keys: [{id: key_soak, key: sk_soak_key}]}
deployments:
  - id: dep
    instances: ["$UP_A", "$UP_B"]
    upstream: {passive: {failures: 3, ejection: 5s}}
    policies:
      - id: audit
        logging: {redact_headers: [x-generation-$1]}
      - id: limit
        ratelimit: {limit: 1000000, window: 1s}
      - id: auth
        match: [{path: {prefix: /keyed}}]
        keyauth: {keyspaces: [ks], locations: [{header: {name: X-API-Key}}, {query: {name: api_key}}]}
routes:
  - {host: soak.test, deployment: dep}
  - {host: soak.test, path_prefix: /api, strip_prefix: true, deployment: dep}
YAML
    mv "$tmp/keygate.yaml.tmp" "$tmp/keygate.yaml"
}
write_config 0
"$BIN/keygate" run --config "$tmp/keygate.yaml" 2>"$tmp/keygate.log" &
KG_PID=$!
pids+=("$KG_PID")
for _ in $(seq 100); do
    curl -fs "http://$KG_ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

client() { # $1: client number; appends one status per line to its own file
    local out="$tmp/client-$1" n=0 end=$((SECONDS + SOAK_SECONDS))
    while ((SECONDS < end)); do
        n=$((n + 1))
        case $((n % 5)) in
            0) args=(-X POST --data-binary "soak body $n" "http://$KG_HTTP/api/small") ;;
            1) args=(-H "X-API-Key: sk_soak_key" "http://$KG_HTTP/keyed/small") ;;
            2) args=("http://$KG_HTTP/keyed/small?api_key=sk_soak_key") ;;
            3) args=("http://$KG_HTTP/keyed/small") ;;   # 401
            *) args=("http://$KG_HTTP/small") ;;
        esac
        curl -s -o /dev/null -m 10 -w '%{http_code}\n' -H "Host: soak.test" "${args[@]}" >>"$out" 2>/dev/null || echo 000 >>"$out"
    done
}
for i in $(seq "$CLIENTS"); do client "$i" & pids+=($!); done

start=$SECONDS generation=0
printf '%8s %10s %8s %8s %10s\n' elapsed requests 5xx conn_fail rss_kib
while ((SECONDS - start < SOAK_SECONDS)); do
    sleep 10
    elapsed=$((SECONDS - start))
    if ((elapsed % RELOAD_EVERY < 10)); then generation=$((generation + 1)); write_config "$generation"; fi
    if ((elapsed % RESTART_EVERY < 10)); then
        kill "$UPA_PID" 2>/dev/null || true; sleep 2; UPA_PID=$(start_upstream "$UP_A")
    fi
    if ((elapsed % REDIS_EVERY < 10)); then
        kill "$REDIS_PID" 2>/dev/null || true; sleep 2; REDIS_PID=$(start_redis)
    fi
    kill -0 "$KG_PID" 2>/dev/null || { echo "keygate died"; tail -20 "$tmp/keygate.log"; exit 1; }
    statuses=$(cat "$tmp"/client-* 2>/dev/null || true)
    requests=$(grep -c . <<<"$statuses" || true)
    errors=$(grep -c '^5' <<<"$statuses" || true)
    conn_fail=$(grep -c '^000' <<<"$statuses" || true)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$KG_PID/status")
    printf '%8s %10s %8s %8s %10s\n' "$elapsed" "$requests" "$errors" "$conn_fail" "$rss"
done
wait "${pids[@]:1}" 2>/dev/null || true
kill -0 "$KG_PID" 2>/dev/null || { echo "keygate died"; exit 1; }
grep -q sk_soak_key "$tmp/requests.log" && { echo "a key reached the request log"; exit 1; }
echo "keygate alive after ${SOAK_SECONDS}s; status counts:"
cat "$tmp"/client-* | sort | uniq -c
