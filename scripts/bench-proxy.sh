#!/usr/bin/env bash
# bench-proxy.sh — compare keygate against nginx as a plain HTTP/1.1 reverse proxy.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/bench-proxy.sh
#     DURATION=30s CONNS=128 scripts/bench-proxy.sh
#
# What it does:
#   1. cargo build --profile $PROFILE --bin keygate --example bench_upstream --example pingora_baseline
#      (PROFILE [production]: what is shipped; `release` builds faster)
#      (skip with SKIP_BUILD=1; the binaries must then already exist)
#   2. starts examples/bench_upstream on $UPSTREAM (GET /small -> "ok\n", GET /1m -> 1 MiB)
#   3. starts keygate with a generated config (listen.threads: 1, one deployment,
#      one route for host "localhost") and waits for http://$KG_ADMIN/readyz = 200
#   4. starts nginx (worker_processes 1, upstream keepalive 64, proxy_http_version
#      1.1, Connection "", access_log off, 16x64k proxy buffers and no temp-file
#      spooling) from a private temp prefix: no root config, own pid/error
#      log/temp paths, not daemonized
#   5. for each target and path: wrk warm-up ($WARMUP), then
#      `wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency` with `Host: localhost`
#   6. prints RPS / p50 / p99 / errors / CPU µs per request / RSS per run (CPU and
#      RSS of the serving process tree from /proc: utime+stime over the run, VmRSS
#      at its end) and the keygate/nginx RPS ratio
#
# Both proxies get one worker thread/process; wrk, the upstream and the proxy
# share the machine, so absolute numbers depend heavily on the core count
# (on 2 cores everything competes). Compare the ratio, not the absolutes,
# and run it more than once: on a shared 2-core box the /1m row varies a lot.
#
# Environment (defaults in brackets):
#   UPSTREAM [127.0.0.1:9100]   KG_HTTP [127.0.0.1:18080]   KG_ADMIN [127.0.0.1:19901]
#   NGINX_HTTP [127.0.0.1:18081]
#   DURATION [10s]  WARMUP [2s]  CONNS [64]  WRK_THREADS [2]  PATHS ["/small /1m"]
#   DIRECT [1]      also benchmark the upstream directly (baseline row)
#   SKIP_BUILD [0]  KEEP_TMP [0] keep the temp dir (configs, logs, raw wrk output)
#   ROUNDS [1]      repeat every run, interleaved; ratios use the mean RPS (a shared
#                   2-core VM varies by 10-20% from one run to the next)
#   RATELIMIT [0]   1: also run keygate with a `ratelimit` policy, in memory
#                   (kg-rl, on $KG_RL_HTTP) and shared through a redis-server the
#                   script starts (kg-rl-redis, on $KG_RLR_HTTP), and print their
#                   RPS relative to plain keygate (targets: >= 0.90 and >= 0.75)
#   TRACING [0]     1: also run keygate with telemetry.tracing at sample_ratio 1.0
#                   (kg-trace, on $KG_TR_HTTP) exporting to a live OTLP/HTTP receiver
#                   (examples/otlp_sink, on $OTLP_ADDR), and print its RPS relative
#                   to plain keygate (target: >= 0.90) and the spans received/dropped
#
# wrk and nginx are installed with apt-get when missing (needs root or sudo).
# Every process the script starts is stopped on exit (trap), and every step is
# bounded by a timeout.
set -euo pipefail

PROFILE=${PROFILE:-production}
UPSTREAM=${UPSTREAM:-127.0.0.1:9100}
KG_HTTP=${KG_HTTP:-127.0.0.1:18080}
KG_ADMIN=${KG_ADMIN:-127.0.0.1:19901}
NGINX_HTTP=${NGINX_HTTP:-127.0.0.1:18081}
PINGORA_HTTP=${PINGORA_HTTP:-127.0.0.1:18082}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
PATHS=${PATHS:-/small /1m}
DIRECT=${DIRECT:-1}
BASELINE=${BASELINE:-1}   # 1: also measure a bare pingora proxy (examples/pingora_baseline.rs)
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
RATELIMIT=${RATELIMIT:-0}
ROUNDS=${ROUNDS:-1}
KG_RL_HTTP=${KG_RL_HTTP:-127.0.0.1:18083}
KG_RLR_HTTP=${KG_RLR_HTTP:-127.0.0.1:18084}
REDIS_PORT=${REDIS_PORT:-16399}
TRACING=${TRACING:-0}
KG_TR_HTTP=${KG_TR_HTTP:-127.0.0.1:18085}
OTLP_ADDR=${OTLP_ADDR:-127.0.0.1:14318}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local pid alive
    if [[ -n ${CUR_PID:-} ]]; then kill -TERM "$CUR_PID" 2>/dev/null; fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them a moment, then force.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        alive=0
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        if [[ $alive == 0 ]]; then break; fi
        sleep 0.2
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $KEEP_TMP == 1 || $rc != 0 ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root or sudo to run: $*"
    fi
}

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -n $(find_nginx) ]] || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
NGINX=$(find_nginx)
[[ -n $NGINX ]] || die "nginx not found after install"

# ---------------------------------------------------------------- helpers
port_open() { # host:port -> 0 if something accepts connections there
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

wait_http_200() { # url timeout_s pid name
    local url=$1 timeout=$2 pid=$3 name=$4 i code
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited early; log:"; tail -n 40 "$TMP/$name.log" >&2 || true; die "$name died"; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    log "$name not ready after ${timeout}s ($url, last code ${code:-none}); log:"
    tail -n 40 "$TMP/$name.log" >&2 || true
    die "$name not ready"
}

LAST_PID=
start() { # name cmd... ; runs in background, logs to $TMP/name.log, pid in LAST_PID
    local name=$1; shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

for addr in "$UPSTREAM" "$KG_HTTP" "$KG_ADMIN" "$NGINX_HTTP" "$PINGORA_HTTP"; do
    port_open "$addr" && die "$addr is already in use (set UPSTREAM/KG_HTTP/KG_ADMIN/NGINX_HTTP)"
done

# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building release binaries (keygate, bench_upstream)"
    timeout "$BUILD_TIMEOUT" cargo build --profile "$PROFILE" --bin keygate --example bench_upstream --example pingora_baseline \
        --example otlp_sink
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEYGATE_BIN=$TARGET_DIR/$PROFILE/keygate
UPSTREAM_BIN=$TARGET_DIR/$PROFILE/examples/bench_upstream
BASELINE_BIN=$TARGET_DIR/$PROFILE/examples/pingora_baseline
SINK_BIN=$TARGET_DIR/$PROFILE/examples/otlp_sink
[[ -x $KEYGATE_BIN ]] || die "missing $KEYGATE_BIN"
[[ -x $UPSTREAM_BIN ]] || die "missing $UPSTREAM_BIN"

# ---------------------------------------------------------------- upstream
log "starting bench_upstream on $UPSTREAM"
start upstream "$UPSTREAM_BIN" "$UPSTREAM"
up_pid=$LAST_PID
wait_http_200 "http://$UPSTREAM/small" 10 "$up_pid" upstream

# ---------------------------------------------------------------- keygate
start_keygate() { # name http admin policies-yaml state-yaml; pid in LAST_PID
    local name=$1 http=$2 admin=$3 policies=$4 state=$5
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/keygate.yaml" <<EOF
# generated by scripts/bench-proxy.sh
listen:
  http: "$http"
  admin: "$admin"
  threads: 1
$state
deployments:
  - id: bench
    instances: ["$UPSTREAM"]
$policies
routes:
  - host: localhost
    deployment: bench
EOF
    log "starting $name on $http (admin $admin, 1 thread)"
    start "$name" env RUST_LOG="${RUST_LOG:-warn}" "$KEYGATE_BIN" run --config "$TMP/$name/keygate.yaml"
    wait_http_200 "http://$admin/readyz" 30 "$LAST_PID" "$name"
}
start_keygate keygate "$KG_HTTP" "$KG_ADMIN" "" ""
kg_pid=$LAST_PID

rl_pids=()
if [[ $RATELIMIT == 1 ]]; then
    command -v redis-server >/dev/null || die "RATELIMIT=1 needs redis-server (apt-get install redis-server)"
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    rl_pids+=("$LAST_PID")
    for _ in $(seq 50); do port_open "127.0.0.1:$REDIS_PORT" && break; sleep 0.1; done
    # One hot bucket (every wrk connection comes from 127.0.0.1), never exceeded.
    policy='    policies:
      - id: rl
        ratelimit: {limit: 1000000000, window: 60s, identifiers: [remote_ip: {}]}'
    start_keygate kg-rl "$KG_RL_HTTP" 127.0.0.1:19902 "$policy" "state: {dir: $TMP/kg-rl/state}"
    rl_pids+=("$LAST_PID")
    start_keygate kg-rl-redis "$KG_RLR_HTTP" 127.0.0.1:19903 "$policy" \
        "state: {dir: $TMP/kg-rl-redis/state, redis: \"redis://127.0.0.1:$REDIS_PORT\"}"
    rl_pids+=("$LAST_PID")
fi

tr_pids=()
if [[ $TRACING == 1 ]]; then
    [[ -x $SINK_BIN ]] || die "missing $SINK_BIN"
    start otlp_sink "$SINK_BIN" "$OTLP_ADDR"
    tr_pids+=("$LAST_PID")
    for _ in $(seq 50); do port_open "$OTLP_ADDR" && break; sleep 0.1; done
    start_keygate kg-trace "$KG_TR_HTTP" 127.0.0.1:19904 "" \
        "telemetry: {tracing: {otlp_endpoint: \"http://$OTLP_ADDR\", sample_ratio: 1.0}}"
    tr_pids+=("$LAST_PID")
fi

# ---------------------------------------------------------------- pingora
# A bare pingora proxy (examples/pingora_baseline.rs): the framework's floor,
# so the report separates keygate's own cost from pingora's.
pg_pid=
if [[ $BASELINE == 1 && -x $BASELINE_BIN ]]; then
    log "starting the bare pingora baseline on $PINGORA_HTTP"
    start pingora "$BASELINE_BIN" "$PINGORA_HTTP" "$UPSTREAM"
    pg_pid=$LAST_PID
    wait_http_200 "http://$PINGORA_HTTP/small" 10 "$pg_pid" pingora
fi

# ---------------------------------------------------------------- nginx
NG=$TMP/nginx
mkdir -p "$NG/logs" "$NG/tmp"
user_line=""
if [[ $(id -u) == 0 ]]; then user_line="user root;"; fi # workers would otherwise drop to nobody
cat >"$NG/nginx.conf" <<EOF
# generated by scripts/bench-proxy.sh
$user_line
worker_processes 1;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path $NG/tmp/client_body;
    proxy_temp_path       $NG/tmp/proxy;
    fastcgi_temp_path     $NG/tmp/fastcgi;
    uwsgi_temp_path       $NG/tmp/uwsgi;
    scgi_temp_path        $NG/tmp/scgi;
    keepalive_requests 100000;

    upstream bench {
        server $UPSTREAM;
        keepalive 64;
    }
    server {
        listen $NGINX_HTTP;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Buffers sized for large bodies, streamed through memory rather
            # than spooled to a temp file (keygate never touches the disk
            # either). With the 4k/8k defaults nginx reaches roughly half
            # the /1m throughput, which would flatter keygate.
            proxy_buffer_size 64k;
            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
log "starting nginx on $NGINX_HTTP (1 worker)"
start nginx "$NGINX" -p "$NG" -e "$NG/logs/error.log" -c "$NG/nginx.conf"
ng_pid=$LAST_PID
wait_http_200 "http://$NGINX_HTTP/small" 10 "$ng_pid" nginx

# ---------------------------------------------------------------- sanity
for t in "keygate $KG_HTTP" "nginx $NGINX_HTTP"; do
    read -r name addr <<<"$t"
    body=$(curl -sS -m 5 -H 'Host: localhost' "http://$addr/small") || die "$name: /small failed"
    [[ $body == ok ]] || die "$name: /small returned '$body'"
    size=$(curl -sS -m 10 -o /dev/null -w '%{size_download}' -H 'Host: localhost' "http://$addr/1m") || die "$name: /1m failed"
    [[ $size == 1048576 ]] || die "$name: /1m returned $size bytes"
done
log "sanity checks passed"

# ---------------------------------------------------------------- wrk
secs() { # wrk duration (10s, 1m, 30) -> seconds
    local d=$1
    case $d in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $((${d%m} * 60)) ;;
        *h) echo $((${d%h} * 3600)) ;;
        *) echo "$d" ;;
    esac
}
WRK_LIMIT=$(($(secs "$DURATION") + $(secs "$WARMUP") + 60))

to_ms() { # "635.00us" | "2.11ms" | "1.02s" | "1.5m" -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000;
        else if (u == "m") n *= 60000; else if (u == "h") n *= 3600000;
        printf "%.2f", n }'
}

# Run a command in the background and wait for it, so that a signal to this
# script runs the cleanup trap at once instead of after the command ends.
CUR_PID=
bg_wait() {
    "$@" &
    CUR_PID=$!
    local rc=0
    wait "$CUR_PID" || rc=$?
    CUR_PID=
    return "$rc"
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)

pid_of() { # target name -> the pid whose process tree serves it ("" if unknown)
    case $1 in
        direct) echo "$up_pid" ;;
        pingora) echo "${pg_pid:-}" ;;
        keygate) echo "$kg_pid" ;;
        nginx) echo "$ng_pid" ;;
        *) echo "" ;;
    esac
}

tree() { # pid -> the pid and its children (nginx's workers)
    echo "$1"
    pgrep -P "$1" || true
}

cpu_ticks() { # pid -> user+system clock ticks of its process tree
    local total=0 p t
    for p in $(tree "$1"); do
        # Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

rss_kib() { # pid -> resident KiB of its process tree
    local total=0 p r
    for p in $(tree "$1"); do
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${r:-0}))
    done
    echo "$total"
}

run_wrk() { # name addr path
    local name=$1 addr=$2 path=$3 out
    out=$TMP/wrk-$name-${path//\//_}.txt
    log "wrk $name $path: warm-up $WARMUP"
    bg_wait timeout "$WRK_LIMIT" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$WARMUP" -H 'Host: localhost' "http://$addr$path" >/dev/null
    log "wrk $name $path: -t$WRK_THREADS -c$CONNS -d$DURATION"
    local pid ticks_before=0 ticks_after=0 rss=0
    pid=$(pid_of "$name")
    [[ -n $pid ]] && ticks_before=$(cpu_ticks "$pid")
    bg_wait timeout "$WRK_LIMIT" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -H 'Host: localhost' "http://$addr$path" >"$out"
    if [[ -n $pid ]]; then
        ticks_after=$(cpu_ticks "$pid")
        rss=$(rss_kib "$pid")
    fi
    local rps p50 p99 xfer errs non2xx
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    xfer=$(awk '/^Transfer\/sec:/ {print $2}' "$out")
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    errs=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")
    [[ -n $rps && -n $p50 && -n $p99 ]] || { cat "$out" >&2; die "could not parse wrk output for $name $path"; }
    # CPU µs per request: the process tree's user+system time over the run / requests.
    local cpu_us
    cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v rps="$rps" -v d="$(secs "$DURATION")" \
        -v known="${pid:+1}" 'BEGIN { if (known && rps > 0) printf "%.1f", t / hz * 1e6 / (rps * d); else print "-" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "$xfer" "$((${errs:-0} + ${non2xx:-0}))" "$cpu_us" "$((rss / 1024))" >>"$RESULTS"
}

for round in $(seq "$ROUNDS"); do
    for path in $PATHS; do
        if [[ $DIRECT == 1 ]]; then run_wrk direct "$UPSTREAM" "$path"; fi
        if [[ -n $pg_pid ]]; then run_wrk pingora "$PINGORA_HTTP" "$path"; fi
        run_wrk keygate "$KG_HTTP" "$path"
        if [[ $RATELIMIT == 1 ]]; then
            run_wrk kg-rl "$KG_RL_HTTP" "$path"
            run_wrk kg-rl-redis "$KG_RLR_HTTP" "$path"
        fi
        if [[ $TRACING == 1 ]]; then run_wrk kg-trace "$KG_TR_HTTP" "$path"; fi
        run_wrk nginx "$NGINX_HTTP" "$path"
        # Make sure nothing died mid-run.
        for pid in "$up_pid" "$kg_pid" "$ng_pid" $pg_pid "${rl_pids[@]}" "${tr_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "a server process ($pid) died during the run; see $TMP/*.log"
        done
    done
done

# ---------------------------------------------------------------- report
echo
echo "keygate vs nginx — 1 proxy worker, wrk -t$WRK_THREADS -c$CONNS -d$DURATION, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
awk -F'\t' '
    BEGIN { printf "%-12s %-7s %12s %10s %10s %11s %7s %11s %8s\n", "target", "path", "req/s", "p50 ms", "p99 ms", "transfer/s", "errors", "CPU us/req", "RSS MiB"
            printf "%-12s %-7s %12s %10s %10s %11s %7s %11s %8s\n", "------------", "-------", "------------", "----------", "----------", "-----------", "-------", "-----------", "--------" }
    { printf "%-12s %-7s %12.0f %10.2f %10.2f %11s %7d %11s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9
      k = $1 SUBSEP $2; sum[k] += $3; runs[k]++; rps[k] = sum[k] / runs[k]
      if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 } }
    END {
        print ""
        if (runs["keygate" SUBSEP order[1]] > 1) print "ratios of the mean RPS over " runs["keygate" SUBSEP order[1]] " rounds:"
        for (i = 1; i <= n; i++) {
            p = order[i]; k = rps["keygate" SUBSEP p]; g = rps["nginx" SUBSEP p]
            if (g > 0) printf "keygate/nginx RPS ratio %-7s %.2f\n", p, k / g
            b = rps["pingora" SUBSEP p]
            if (b > 0) printf "keygate/bare-pingora RPS ratio %-7s %.2f\n", p, k / b
            m = rps["kg-rl" SUBSEP p]; r = rps["kg-rl-redis" SUBSEP p]
            if (m > 0 && k > 0) printf "ratelimit (memory)/keygate RPS ratio %-7s %.2f\n", p, m / k
            if (r > 0 && k > 0) printf "ratelimit (redis)/keygate RPS ratio %-7s %.2f\n", p, r / k
            t = rps["kg-trace" SUBSEP p]
            if (t > 0 && k > 0) printf "tracing (ratio 1.0)/keygate RPS ratio %-7s %.2f\n", p, t / k
        }
    }' "$RESULTS"

if [[ $TRACING == 1 ]]; then
    received=$(curl -sS -m 5 "http://$OTLP_ADDR/count" || echo "?")
    dropped=$(curl -sS -m 5 "http://127.0.0.1:19904/metrics" | awk '/^keygate_trace_spans_dropped_total/ {print $2}')
    echo "tracing: spans received by the collector $received, dropped by keygate ${dropped:-?}"
fi
