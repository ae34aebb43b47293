#!/usr/bin/env bash
# bench-proxy.sh — keygate side by side with nginx, haproxy and a bare pingora
# proxy as an HTTP/1.1 reverse proxy, plain and TLS-terminating.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/bench-proxy.sh
#     ROUNDS=3 SCENARIOS="http https" WORKERS=2 scripts/bench-proxy.sh
#     PROFILE=release DURATION=2s WARMUP=1s ROUNDS=1 scripts/bench-proxy.sh   # a quick try
#
# What it does:
#   1. cargo build --profile $PROFILE --bin keygate, then (a second build,
#      so that keygate is the binary that is shipped) --example bench_upstream
#      --example pingora_baseline --example pingora_core_baseline
#      (PROFILE [production]: what is shipped; `release` builds faster)
#      (skip with SKIP_BUILD=1; the binaries must then already exist)
#   2. with a TLS scenario: a self-signed ECDSA P-256 certificate for
#      localhost/127.0.0.1 (openssl) in the temp dir, served by every proxy
#      (keygate: as tls.certs_dir's default.crt/default.key; nginx:
#      ssl_certificate, ssl_session_tickets on; haproxy: bind ... ssl crt);
#      the upstream stays plain HTTP
#   3. starts examples/bench_upstream on $UPSTREAM (GET /small -> "ok\n", GET /1m -> 1 MiB)
#   4. starts, each with $WORKERS worker threads/processes:
#      - keygate: generated config, one deployment, one route for host
#        "localhost", listen.threads $WORKERS, plain HTTP and (with TLS) HTTPS
#      - keygate+policies ("kg-policies"): the same plus a policy chain
#        firewall (a match that never matches) -> ip (allow 127.0.0.0/8) ->
#        keyauth (a store key created at start-up through the admin API, so
#        verified through the key cache) -> ratelimit (in memory, a limit
#        never reached). wrk sends `Authorization: Bearer <key>` to every
#        target (the others just forward it)
#      - nginx: worker_processes $WORKERS, upstream keepalive 64,
#        proxy_http_version 1.1, access_log off, 16x64k proxy buffers, no
#        temp-file spooling; private temp prefix, not daemonized
#      - haproxy (when installed or installable; else its row is skipped):
#        nbthread $WORKERS, http-reuse always, logs off, foreground
#      - bare pingora (examples/pingora_baseline.rs): plain HTTP only (the
#        example has no TLS), $WORKERS threads
#      - pingora-core only (examples/pingora_core_baseline.rs): the same
#        exchange on pingora-core's listener, HTTP/1 sessions and upstream
#        pool without pingora-proxy's request machinery; plain HTTP only,
#        $WORKERS threads. Its gap to "bare pingora" is pingora-proxy's
#        per-request cost
#   5. for every round, scenario and target (interleaved): wrk warm-up
#      ($WARMUP), then `wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency`
#      with `Host: localhost`
#   6. prints every run (RPS / p50 / p99 / errors / CPU µs per request / RSS:
#      CPU and RSS of the serving process tree from /proc: utime+stime over
#      the run, VmRSS at its end), then a summary per scenario: the median
#      over ROUNDS of RPS, p99, CPU µs/request and RSS for each target, its
#      RPS relative to nginx, and keygate+policies relative to keygate
#      (target >= 0.95)
#
# Scenarios (SCENARIOS, space-separated, in this order by default):
#   http       GET /small, keep-alive, plain HTTP
#   https      GET /small, keep-alive, TLS terminated by the proxy
#   1m         GET /1m (1 MiB), keep-alive, plain HTTP
#   handshake  GET /small over HTTPS with `Connection: close`: a new TLS
#              connection and a full handshake per request. wrk by itself
#              offers the previous connection's session, and nginx, haproxy
#              and keygate all resume it (TLS 1.3 PSK: no certificate or
#              signature), so the script builds scripts/bench/wrk-no-resume.c
#              (cc) and preloads it into wrk; without a C compiler these are
#              resumed handshakes, and the output says so. wrk does its side
#              of every handshake on one CPU and can be the limit (equal req/s
#              for every proxy): then compare CPU us/request
#   resume     the same with wrk as it is: resumed handshakes (not in the default)
#
# TLS: every proxy offers TLS 1.2 and 1.3 (nginx 1.22's default lacks 1.3, so
# its ssl_protocols is set); the output's header shows what wrk's OpenSSL
# negotiated with each.
#
# Placement: with taskset and >= 2 CPUs, wrk runs on the last CPU and the
# proxies and the upstream on the others (when there are at least
# WORKERS + 2 CPUs, the proxy gets WORKERS CPUs of its own and the upstream
# the rest); the header of the output says where everything ran. On 2 CPUs
# the proxy and the upstream share one CPU. Absolute numbers depend heavily on
# the machine: compare the ratios, and use ROUNDS=3 or more.
#
# Environment (defaults in brackets):
#   SCENARIOS ["http https 1m handshake"]   (PATHS="/small /1m", the former
#                   setting, still works: /small -> http, /1m -> 1m)
#   WORKERS [1]     worker threads/processes of every proxy
#   DURATION [10s]  WARMUP [2s]  CONNS [64]  WRK_THREADS [2]
#   ROUNDS [1]      repeat every run, interleaved; the summary uses medians
#   PIN [1]         0: no taskset placement
#   POLICIES [1]    0: no keygate+policies target (and no Authorization header)
#   HAPROXY [1]     0: no haproxy target
#   BASELINE [1]    0: no bare pingora and pingora-core targets
#   DIRECT [1]      also benchmark the upstream directly (plain HTTP scenarios)
#   NGINX_FIELDS [0] 1: nginx adds to each exchange what keygate adds (Host as
#                   received, X-Forwarded-For/-Host/-Proto, X-Request-Id and
#                   X-Deployment-Id to the upstream; X-Request-Id and
#                   Server-Timing to the client), so both do the same work
#   PROFILE [production]  SKIP_BUILD [0]  BUILD_TIMEOUT [3600]  APT_TIMEOUT [600]
#   KEYGATE_BIN [target/$PROFILE/keygate]  another keygate binary to measure
#                   (scripts/build-pgo.sh's, say); the examples still come from
#                   target/$PROFILE
#   KEEP_TMP [0]    keep the temp dir (configs, logs, certificate, raw wrk output)
#   RATELIMIT [0]   1: also run keygate with only a `ratelimit` policy, in memory
#                   (kg-rl) and shared through a redis-server the script starts
#                   (kg-rl-redis), and print their RPS relative to plain keygate
#                   (targets: >= 0.90 and >= 0.75); plain HTTP scenarios only
#   TRACING [0]     1: also run keygate with telemetry.tracing at sample_ratio 1.0
#                   (kg-trace) exporting to a live OTLP/HTTP receiver
#                   (examples/otlp_sink, on $OTLP_ADDR), and print its RPS relative
#                   to plain keygate (target: >= 0.90) and the spans received/dropped;
#                   plain HTTP scenarios only
# Addresses (all on loopback; every one is checked to be free first):
#   UPSTREAM [127.0.0.1:9100]
#   KG_HTTP [127.0.0.1:18080]      KG_HTTPS [127.0.0.1:18443]      KG_ADMIN [127.0.0.1:19901]
#   KG_POL_HTTP [127.0.0.1:18087]  KG_POL_HTTPS [127.0.0.1:18446]  KG_POL_ADMIN [127.0.0.1:19905]
#   NGINX_HTTP [127.0.0.1:18081]   NGINX_HTTPS [127.0.0.1:18444]
#   HAPROXY_HTTP [127.0.0.1:18086] HAPROXY_HTTPS [127.0.0.1:18445]
#   PINGORA_HTTP [127.0.0.1:18082]  PCORE_HTTP [127.0.0.1:18088]
#   KG_RL_HTTP [127.0.0.1:18083] KG_RL_ADMIN [127.0.0.1:19902]
#   KG_RLR_HTTP [127.0.0.1:18084] KG_RLR_ADMIN [127.0.0.1:19903] REDIS_PORT [16399]
#   KG_TR_HTTP [127.0.0.1:18085] KG_TR_ADMIN [127.0.0.1:19904] OTLP_ADDR [127.0.0.1:14318]
#
# wrk, nginx, curl and openssl are installed with apt-get when missing (needs
# root or passwordless sudo), and haproxy too when HAPROXY=1 (if that fails
# its row is skipped with a message). Without root, install them first (and a
# C compiler, cc, for the handshake scenario). Every process the
# script starts is stopped on exit (trap), and every step is bounded by a
# timeout.
set -euo pipefail

PROFILE=${PROFILE:-production}
UPSTREAM=${UPSTREAM:-127.0.0.1:9100}
KG_HTTP=${KG_HTTP:-127.0.0.1:18080}
KG_HTTPS=${KG_HTTPS:-127.0.0.1:18443}
KG_ADMIN=${KG_ADMIN:-127.0.0.1:19901}
KG_POL_HTTP=${KG_POL_HTTP:-127.0.0.1:18087}
KG_POL_HTTPS=${KG_POL_HTTPS:-127.0.0.1:18446}
KG_POL_ADMIN=${KG_POL_ADMIN:-127.0.0.1:19905}
NGINX_HTTP=${NGINX_HTTP:-127.0.0.1:18081}
NGINX_HTTPS=${NGINX_HTTPS:-127.0.0.1:18444}
HAPROXY_HTTP=${HAPROXY_HTTP:-127.0.0.1:18086}
HAPROXY_HTTPS=${HAPROXY_HTTPS:-127.0.0.1:18445}
PINGORA_HTTP=${PINGORA_HTTP:-127.0.0.1:18082}
PCORE_HTTP=${PCORE_HTTP:-127.0.0.1:18088}
KG_RL_HTTP=${KG_RL_HTTP:-127.0.0.1:18083}
KG_RL_ADMIN=${KG_RL_ADMIN:-127.0.0.1:19902}
KG_RLR_HTTP=${KG_RLR_HTTP:-127.0.0.1:18084}
KG_RLR_ADMIN=${KG_RLR_ADMIN:-127.0.0.1:19903}
REDIS_PORT=${REDIS_PORT:-16399}
KG_TR_HTTP=${KG_TR_HTTP:-127.0.0.1:18085}
KG_TR_ADMIN=${KG_TR_ADMIN:-127.0.0.1:19904}
OTLP_ADDR=${OTLP_ADDR:-127.0.0.1:14318}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-1}
PIN=${PIN:-1}
POLICIES=${POLICIES:-1}
HAPROXY=${HAPROXY:-1}
BASELINE=${BASELINE:-1}
DIRECT=${DIRECT:-1}
NGINX_FIELDS=${NGINX_FIELDS:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP_TMP=${KEEP_TMP:-0}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
APT_TIMEOUT=${APT_TIMEOUT:-600}
RATELIMIT=${RATELIMIT:-0}
TRACING=${TRACING:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer (got '$WORKERS')"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"

# ---------------------------------------------------------------- scenarios
if [[ -z ${SCENARIOS:-} && -n ${PATHS:-} ]]; then # the former setting
    SCENARIOS=
    for p in $PATHS; do
        case $p in
            /small) SCENARIOS+=" http" ;;
            /1m) SCENARIOS+=" 1m" ;;
            *) die "PATHS: only /small and /1m are known (use SCENARIOS)" ;;
        esac
    done
fi
SCENARIOS=${SCENARIOS:-http https 1m handshake}
TLS=0
for s in $SCENARIOS; do
    case $s in
        http | 1m) ;;
        https | handshake | resume) TLS=1 ;;
        *) die "unknown scenario '$s' (known: http https 1m handshake resume)" ;;
    esac
done
scenario_path() { case $1 in 1m) echo /1m ;; *) echo /small ;; esac; }
scenario_tls() { [[ $1 == https || $1 == handshake || $1 == resume ]]; }
scenario_desc() {
    case $1 in
        http) echo "GET /small, keep-alive, plain HTTP" ;;
        https) echo "GET /small, keep-alive, TLS terminated by the proxy" ;;
        1m) echo "GET /1m (1 MiB), keep-alive, plain HTTP" ;;
        handshake) echo "GET /small over HTTPS, Connection: close: $HANDSHAKE_KIND TLS handshake per request" ;;
        resume) echo "GET /small over HTTPS, Connection: close: a resumed TLS handshake per request" ;;
    esac
}

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/keygate-bench.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local pid alive all=()
    if [[ -n ${CUR_PID:-} ]]; then kill -TERM "$CUR_PID" 2>/dev/null; fi
    # The children too (nginx's workers), so that nothing is left holding a port.
    for pid in "${PIDS[@]}"; do
        all+=("$pid")
        while read -r child; do [[ -n $child ]] && all+=("$child"); done < <(pgrep -P "$pid" 2>/dev/null)
    done
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them a moment, then force.
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
        alive=0
        for pid in "${all[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        if [[ $alive == 0 ]]; then break; fi
        sleep 0.2
    done
    for pid in "${all[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
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
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else
        log "need root or sudo to run: $*"
        return 1
    fi
}

apt_install() { # packages... ; 0 on success
    log "installing: $*"
    as_root env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" \
            apt-get install -y -qq --no-install-recommends "$@" >"$TMP/apt.log" 2>&1
}

find_sbin() { # name -> its path, also from /usr/sbin outside PATH ("" if missing)
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -n $(find_sbin nginx) ]] || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
if [[ $TLS == 1 ]]; then command -v openssl >/dev/null || missing+=(openssl); fi
if ((${#missing[@]})); then
    apt_install "${missing[@]}" || { tail -n 20 "$TMP/apt.log" >&2 2>/dev/null; die "could not install ${missing[*]}"; }
fi
NGINX=$(find_sbin nginx)
[[ -n $NGINX ]] || die "nginx not found after install"

HAPROXY_BIN=
HAPROXY_SKIP= # why haproxy has no row
if [[ $HAPROXY == 1 ]]; then
    HAPROXY_BIN=$(find_sbin haproxy)
    if [[ -z $HAPROXY_BIN ]]; then
        if apt_install haproxy; then HAPROXY_BIN=$(find_sbin haproxy); fi
        if [[ -z $HAPROXY_BIN ]]; then
            HAPROXY_SKIP="not installed (apt-get install haproxy failed)"
            log "haproxy: $HAPROXY_SKIP; its row is skipped"
        fi
    fi
else
    HAPROXY_SKIP="HAPROXY=0"
fi

# ---------------------------------------------------------------- placement
# Every CPU this script may run on (its affinity list, e.g. "0-3,6").
ALL_CPUS=()
if command -v taskset >/dev/null; then
    aff=$(taskset -pc $$ 2>/dev/null | sed 's/.*: *//') || aff=
    IFS=, read -ra parts <<<"$aff"
    for part in "${parts[@]}"; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            for ((c = BASH_REMATCH[1]; c <= BASH_REMATCH[2]; c++)); do ALL_CPUS+=("$c"); done
        elif [[ $part =~ ^[0-9]+$ ]]; then
            ALL_CPUS+=("$part")
        fi
    done
fi
NCPU=$(nproc)
PROXY_PIN=() UPSTREAM_PIN=() WRK_PIN=()
PLACEMENT="none: wrk, the proxies and the upstream share all $NCPU CPU(s)"
PLACEMENT_NOTE=
join() { local IFS=,; echo "$*"; }
if [[ $PIN == 1 ]] && ((${#ALL_CPUS[@]} >= 2)); then
    n=${#ALL_CPUS[@]}
    wrk_cpu=${ALL_CPUS[n - 1]}
    servers=("${ALL_CPUS[@]:0:n-1}")
    WRK_PIN=(taskset -c "$wrk_cpu")
    if ((n >= WORKERS + 2)); then
        proxy_cpus=$(join "${servers[@]:0:WORKERS}")
        upstream_cpus=$(join "${servers[@]:WORKERS}")
        PLACEMENT="wrk on CPU $wrk_cpu; proxy on CPU(s) $proxy_cpus; upstream on CPU(s) $upstream_cpus (taskset)"
    else
        proxy_cpus=$(join "${servers[@]}")
        upstream_cpus=$proxy_cpus
        PLACEMENT="wrk on CPU $wrk_cpu; proxy and upstream on CPU(s) $proxy_cpus (taskset)"
        PLACEMENT_NOTE="full isolation is not possible on $n CPUs with WORKERS=$WORKERS (it needs WORKERS + 2 = $((WORKERS + 2)): a CPU per proxy worker, one for the upstream, one for wrk); the proxy's $WORKERS worker(s) and the upstream compete for $((n - 1)) CPU(s)"
    fi
    PROXY_PIN=(taskset -c "$proxy_cpus")
    UPSTREAM_PIN=(taskset -c "$upstream_cpus")
elif [[ $PIN == 1 ]]; then
    if command -v taskset >/dev/null; then
        PLACEMENT_NOTE="only 1 CPU: no placement possible"
    else
        PLACEMENT_NOTE="taskset not found (util-linux): no placement"
    fi
fi
log "placement: $PLACEMENT"
if [[ -n $PLACEMENT_NOTE ]]; then log "note: $PLACEMENT_NOTE"; fi

# ---------------------------------------------------------------- helpers
port_open() { # host:port -> 0 if something accepts connections there
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

wait_http_200() { # url timeout_s pid name [curl args...]
    local url=$1 timeout=$2 pid=$3 name=$4 i code
    shift 4
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited early; log:"; tail -n 40 "$TMP/$name.log" >&2 || true; die "$name died"; }
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$@" "$url" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    log "$name not ready after ${timeout}s ($url, last code ${code:-none}); log:"
    tail -n 40 "$TMP/$name.log" >&2 || true
    die "$name not ready"
}

wait_port() { # addr timeout_s pid name
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$3" 2>/dev/null || { tail -n 40 "$TMP/$4.log" >&2 || true; die "$4 died"; }
        port_open "$1" && return 0
        sleep 0.1
    done
    die "$4 not listening on $1 after $2 s"
}

LAST_PID=
start() { # name cmd... ; runs in background, logs to $TMP/name.log, pid in LAST_PID
    local name=$1
    shift
    "$@" >"$TMP/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# The targets, in the order of the summary table.
TARGETS=()
declare -A T_LABEL=() T_HTTP=() T_HTTPS=() T_PID=() T_SKIP=()
add_target() { # name label pid http-addr https-addr
    TARGETS+=("$1")
    T_LABEL[$1]=$2 T_PID[$1]=$3 T_HTTP[$1]=$4 T_HTTPS[$1]=$5
}
skip_target() { # name label reason
    TARGETS+=("$1")
    T_LABEL[$1]=$2 T_SKIP[$1]=$3 T_PID[$1]='' T_HTTP[$1]='' T_HTTPS[$1]=''
}

addrs=("$UPSTREAM" "$KG_HTTP" "$KG_ADMIN" "$NGINX_HTTP")
if [[ $TLS == 1 ]]; then addrs+=("$KG_HTTPS" "$NGINX_HTTPS"); fi
if [[ $POLICIES == 1 ]]; then addrs+=("$KG_POL_HTTP" "$KG_POL_ADMIN"); fi
if [[ $POLICIES == 1 && $TLS == 1 ]]; then addrs+=("$KG_POL_HTTPS"); fi
if [[ -n $HAPROXY_BIN ]]; then addrs+=("$HAPROXY_HTTP"); fi
if [[ -n $HAPROXY_BIN && $TLS == 1 ]]; then addrs+=("$HAPROXY_HTTPS"); fi
if [[ $BASELINE == 1 ]]; then addrs+=("$PINGORA_HTTP" "$PCORE_HTTP"); fi
if [[ $RATELIMIT == 1 ]]; then addrs+=("$KG_RL_HTTP" "$KG_RL_ADMIN" "$KG_RLR_HTTP" "$KG_RLR_ADMIN" "127.0.0.1:$REDIS_PORT"); fi
if [[ $TRACING == 1 ]]; then addrs+=("$KG_TR_HTTP" "$KG_TR_ADMIN" "$OTLP_ADDR"); fi
for addr in "${addrs[@]}"; do
    port_open "$addr" && die "$addr is already in use (every address is configurable: see the header of $0)"
done

# ---------------------------------------------------------------- build
if [[ $SKIP_BUILD != 1 ]]; then
    log "building $PROFILE binaries (keygate, bench_upstream, pingora_baseline, pingora_core_baseline, otlp_sink)"
    # keygate on its own: built beside the examples it would get their
    # dev-dependencies' features, and so other code and symbols than the
    # binary that is shipped (and link/keygate.order is made for).
    timeout "$BUILD_TIMEOUT" cargo build --profile "$PROFILE" --bin keygate
    timeout "$BUILD_TIMEOUT" cargo build --profile "$PROFILE" --example bench_upstream --example pingora_baseline --example pingora_core_baseline \
        --example otlp_sink
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEYGATE_BIN=${KEYGATE_BIN:-$TARGET_DIR/$PROFILE/keygate}
UPSTREAM_BIN=$TARGET_DIR/$PROFILE/examples/bench_upstream
BASELINE_BIN=$TARGET_DIR/$PROFILE/examples/pingora_baseline
PCORE_BIN=$TARGET_DIR/$PROFILE/examples/pingora_core_baseline
SINK_BIN=$TARGET_DIR/$PROFILE/examples/otlp_sink
[[ -x $KEYGATE_BIN ]] || die "missing $KEYGATE_BIN"
[[ -x $UPSTREAM_BIN ]] || die "missing $UPSTREAM_BIN"

# ---------------------------------------------------------------- certificate
CERT=$TMP/tls/cert.pem
KEY=$TMP/tls/key.pem
if [[ $TLS == 1 ]]; then
    mkdir -p "$TMP/tls/keygate"
    timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$KEY" -out "$CERT" >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl could not make a certificate"; }
    # keygate: the default certificate of tls.certs_dir; haproxy: certificate and key in one file.
    cp "$CERT" "$TMP/tls/keygate/default.crt"
    cp "$KEY" "$TMP/tls/keygate/default.key"
    cat "$CERT" "$KEY" >"$TMP/tls/haproxy.pem"
    chmod 600 "$KEY" "$TMP/tls/keygate/default.key" "$TMP/tls/haproxy.pem"
fi

# Full handshakes: wrk would offer its last session (see the header).
HANDSHAKE_KIND="a full"
NO_RESUME=()
if [[ " $SCENARIOS " == *" handshake "* ]]; then
    cc_bin=$(command -v cc || command -v gcc || true)
    if [[ -n $cc_bin ]] && timeout 60 "$cc_bin" -shared -fPIC -O2 -o "$TMP/wrk-no-resume.so" \
        "$ROOT/scripts/bench/wrk-no-resume.c" -ldl >"$TMP/cc.log" 2>&1; then
        NO_RESUME=(env "LD_PRELOAD=$TMP/wrk-no-resume.so")
    else
        HANDSHAKE_KIND="a resumed (no C compiler for scripts/bench/wrk-no-resume.c)"
        log "warning: could not build scripts/bench/wrk-no-resume.c: the handshake scenario does resumed handshakes"
    fi
fi

# ---------------------------------------------------------------- upstream
log "starting bench_upstream on $UPSTREAM"
start upstream ${UPSTREAM_PIN[@]+"${UPSTREAM_PIN[@]}"} "$UPSTREAM_BIN" "$UPSTREAM"
up_pid=$LAST_PID
wait_http_200 "http://$UPSTREAM/small" 10 "$up_pid" upstream
if [[ $DIRECT == 1 ]]; then add_target direct "upstream direct" "$up_pid" "$UPSTREAM" ""; fi
aux_pids=() # helpers (redis, the OTLP receiver) that must stay up too

# ---------------------------------------------------------------- keygate
start_keygate() { # name http https admin top-level-yaml policies-yaml; pid in LAST_PID
    local name=$1 http=$2 https=$3 admin=$4 top=$5 policies=$6 tls_yaml="" https_line=""
    mkdir -p "$TMP/$name"
    if [[ -n $https ]]; then
        https_line="  https: \"$https\""
        tls_yaml="tls:
  redirect_http: false
  certs_dir: \"$TMP/tls/keygate\""
    fi
    cat >"$TMP/$name/keygate.yaml" <<EOF
# generated by scripts/bench-proxy.sh
listen:
  http: "$http"
$https_line
  admin: "$admin"
  threads: $WORKERS
$tls_yaml
$top
deployments:
  - id: bench
    instances: ["$UPSTREAM"]
$policies
routes:
  - host: localhost
    deployment: bench
EOF
    log "starting $name on $http${https:+ and https://$https} (admin $admin, $WORKERS thread(s))"
    start "$name" ${PROXY_PIN[@]+"${PROXY_PIN[@]}"} env RUST_LOG="${RUST_LOG:-warn}" "$KEYGATE_BIN" run --config "$TMP/$name/keygate.yaml"
    wait_http_200 "http://$admin/readyz" 30 "$LAST_PID" "$name"
}

kg_https=
if [[ $TLS == 1 ]]; then kg_https=$KG_HTTPS; fi
start_keygate keygate "$KG_HTTP" "$kg_https" "$KG_ADMIN" "" ""
add_target keygate keygate "$LAST_PID" "$KG_HTTP" "$kg_https"

# keygate+policies: firewall, ip, keyauth (a key from the admin API), ratelimit.
AUTH=() # wrk/curl header arguments, sent to every target
if [[ $POLICIES == 1 ]]; then
    root_key=$(openssl rand -hex 24 2>/dev/null || od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    pol_https=
    if [[ $TLS == 1 ]]; then pol_https=$KG_POL_HTTPS; fi
    start_keygate kg-policies "$KG_POL_HTTP" "$pol_https" "$KG_POL_ADMIN" "admin:
  root_keys: [\"$root_key\"]
keyspaces:
  - id: ks_bench" "$(cat "$ROOT/scripts/bench/policy-chain.yaml")"
    pol_pid=$LAST_PID
    answer=$(curl -sS -m 10 -X POST -H "Authorization: Bearer $root_key" -H 'Content-Type: application/json' \
        -d '{"apiId": "ks_bench", "name": "bench"}' "http://$KG_POL_ADMIN/v2/keys.createKey") ||
        die "kg-policies: keys.createKey failed"
    bench_key=$(sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p' <<<"$answer")
    [[ -n $bench_key ]] || die "kg-policies: no key in the keys.createKey answer: $answer"
    AUTH=(-H "Authorization: Bearer $bench_key")
    log "kg-policies: key created through the admin API"
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' -H 'Host: localhost' "http://$KG_POL_HTTP/small" || true)
    [[ $code == 401 ]] || die "kg-policies: a request without the key got $code, not 401 (is keyauth on?)"
    add_target kg-policies "keygate+policies" "$pol_pid" "$KG_POL_HTTP" "$pol_https"
fi

if [[ $RATELIMIT == 1 ]]; then
    command -v redis-server >/dev/null || die "RATELIMIT=1 needs redis-server (apt-get install redis-server)"
    start redis ${UPSTREAM_PIN[@]+"${UPSTREAM_PIN[@]}"} redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    aux_pids+=("$LAST_PID")
    wait_port "127.0.0.1:$REDIS_PORT" 10 "$LAST_PID" redis
    policy='    policies:
      - id: rl
        ratelimit: {limit: 1000000000, window: 60s, identifiers: [remote_ip: {}]}'
    start_keygate kg-rl "$KG_RL_HTTP" "" "$KG_RL_ADMIN" "state: {dir: $TMP/kg-rl/state}" "$policy"
    add_target kg-rl "keygate+ratelimit" "$LAST_PID" "$KG_RL_HTTP" ""
    start_keygate kg-rl-redis "$KG_RLR_HTTP" "" "$KG_RLR_ADMIN" \
        "state: {dir: $TMP/kg-rl-redis/state, redis: \"redis://127.0.0.1:$REDIS_PORT\"}" "$policy"
    add_target kg-rl-redis "keygate+ratelimit(redis)" "$LAST_PID" "$KG_RLR_HTTP" ""
fi

if [[ $TRACING == 1 ]]; then
    [[ -x $SINK_BIN ]] || die "missing $SINK_BIN"
    start otlp_sink ${UPSTREAM_PIN[@]+"${UPSTREAM_PIN[@]}"} "$SINK_BIN" "$OTLP_ADDR"
    aux_pids+=("$LAST_PID")
    wait_port "$OTLP_ADDR" 10 "$LAST_PID" otlp_sink
    start_keygate kg-trace "$KG_TR_HTTP" "" "$KG_TR_ADMIN" \
        "telemetry: {tracing: {otlp_endpoint: \"http://$OTLP_ADDR\", sample_ratio: 1.0}}" ""
    add_target kg-trace "keygate+tracing" "$LAST_PID" "$KG_TR_HTTP" ""
fi

# ---------------------------------------------------------------- pingora
# A bare pingora proxy (examples/pingora_baseline.rs): the framework's floor,
# so the report separates keygate's own cost from pingora's. Plain HTTP only.
start_baseline() { # name label binary address
    local name=$1 label=$2 bin=$3 addr=$4
    if [[ $BASELINE != 1 ]]; then
        skip_target "$name" "$label" "BASELINE=0"
    elif [[ ! -x $bin ]]; then
        skip_target "$name" "$label" "missing $bin"
    else
        log "starting the $label baseline on $addr"
        start "$name" ${PROXY_PIN[@]+"${PROXY_PIN[@]}"} "$bin" "$addr" "$UPSTREAM" "$WORKERS"
        add_target "$name" "$label" "$LAST_PID" "$addr" ""
        wait_http_200 "http://$addr/small" 10 "$LAST_PID" "$name"
    fi
}
start_baseline pingora "bare pingora" "$BASELINE_BIN" "$PINGORA_HTTP"
# pingora-core alone (examples/pingora_core_baseline.rs): the same exchange
# without pingora-proxy, so the report shows what each layer costs.
start_baseline pcore "pingora-core only" "$PCORE_BIN" "$PCORE_HTTP"

# ---------------------------------------------------------------- nginx
NG=$TMP/nginx
mkdir -p "$NG/logs" "$NG/tmp"
user_line=""
if [[ $(id -u) == 0 ]]; then user_line="user root;"; fi # workers would otherwise drop to nobody
ng_tls=""
if [[ $TLS == 1 ]]; then
    ng_tls="listen $NGINX_HTTPS ssl;
        ssl_certificate     $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_session_tickets on;"
fi
ng_fields=""
if [[ $NGINX_FIELDS == 1 ]]; then
    ng_fields='proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Deployment-Id bench;
            add_header X-Request-Id $request_id always;
            add_header Server-Timing "gateway;dur=$request_time" always;'
fi
cat >"$NG/nginx.conf" <<EOF
# generated by scripts/bench-proxy.sh
$user_line
worker_processes $WORKERS;
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
        $ng_tls
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            $ng_fields
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
ng_https=
if [[ $TLS == 1 ]]; then ng_https=$NGINX_HTTPS; fi
log "starting nginx on $NGINX_HTTP${ng_https:+ and https://$ng_https} ($WORKERS worker(s))"
start nginx ${PROXY_PIN[@]+"${PROXY_PIN[@]}"} "$NGINX" -p "$NG" -e "$NG/logs/error.log" -c "$NG/nginx.conf"
T_LABEL[nginx]=nginx T_PID[nginx]=$LAST_PID T_HTTP[nginx]=$NGINX_HTTP T_HTTPS[nginx]=$ng_https
wait_http_200 "http://$NGINX_HTTP/small" 10 "$LAST_PID" nginx

# ---------------------------------------------------------------- haproxy
if [[ -n $HAPROXY_BIN ]]; then
    HP=$TMP/haproxy
    mkdir -p "$HP"
    hp_tls=""
    hp_https=
    if [[ $TLS == 1 ]]; then
        hp_tls="bind $HAPROXY_HTTPS ssl crt $TMP/tls/haproxy.pem"
        hp_https=$HAPROXY_HTTPS
    fi
    # haproxy refuses to start when maxconn needs more descriptors than the
    # limit allows (two per connection): 4096 like nginx's worker_connections,
    # less under a low `ulimit -n`.
    fds=$(ulimit -n)
    hp_maxconn=4096
    if [[ $fds =~ ^[0-9]+$ ]] && ((fds / 2 - 64 < hp_maxconn)); then hp_maxconn=$((fds / 2 - 64)); fi
    cat >"$HP/haproxy.cfg" <<EOF
# generated by scripts/bench-proxy.sh
global
    nbthread $WORKERS
    maxconn $hp_maxconn
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend fe
    bind $HAPROXY_HTTP
    $hp_tls
    default_backend be
backend be
    server up $UPSTREAM
EOF
    log "starting haproxy on $HAPROXY_HTTP${hp_https:+ and https://$hp_https} (nbthread $WORKERS)"
    start haproxy ${PROXY_PIN[@]+"${PROXY_PIN[@]}"} "$HAPROXY_BIN" -db -f "$HP/haproxy.cfg"
    T_LABEL[haproxy]=haproxy T_PID[haproxy]=$LAST_PID T_HTTP[haproxy]=$HAPROXY_HTTP T_HTTPS[haproxy]=$hp_https
    wait_http_200 "http://$HAPROXY_HTTP/small" 10 "$LAST_PID" haproxy
else
    T_LABEL[haproxy]=haproxy T_SKIP[haproxy]=$HAPROXY_SKIP T_PID[haproxy]='' T_HTTP[haproxy]='' T_HTTPS[haproxy]=''
fi

# Table order (nginx first: the ratios are relative to it): nginx, haproxy,
# pingora-core only, bare pingora, keygate, keygate+policies, the optional
# keygates, the upstream.
ordered=()
for name in nginx haproxy pcore pingora keygate kg-policies kg-rl kg-rl-redis kg-trace direct; do
    if [[ -n ${T_LABEL[$name]:-} ]]; then ordered+=("$name"); fi
done
TARGETS=("${ordered[@]}")

# ---------------------------------------------------------------- sanity
url_of() { # target scenario -> its URL ("" if it does not serve that scenario)
    local name=$1 s=$2 path
    path=$(scenario_path "$s")
    if scenario_tls "$s"; then
        [[ -n ${T_HTTPS[$name]} ]] && echo "https://${T_HTTPS[$name]}$path"
    else
        [[ -n ${T_HTTP[$name]} ]] && echo "http://${T_HTTP[$name]}$path"
    fi
    return 0
}

for name in "${TARGETS[@]}"; do
    [[ -n ${T_SKIP[$name]:-} ]] && continue
    for s in $SCENARIOS; do
        url=$(url_of "$name" "$s")
        [[ -n $url ]] || continue
        case $(scenario_path "$s") in
            /small)
                body=$(curl -sSk -m 5 -H 'Host: localhost' ${AUTH[@]+"${AUTH[@]}"} "$url") || die "$name: $url failed"
                [[ $body == ok ]] || die "$name: $url returned '$body'"
                ;;
            /1m)
                size=$(curl -sSk -m 10 -o /dev/null -w '%{size_download}' -H 'Host: localhost' ${AUTH[@]+"${AUTH[@]}"} "$url") ||
                    die "$name: $url failed"
                [[ $size == 1048576 ]] || die "$name: $url returned $size bytes"
                ;;
        esac
    done
done
log "sanity checks passed"

# What wrk's OpenSSL (the same library and defaults as openssl s_client)
# negotiates with each TLS target, for the header.
TLS_INFO=
if [[ $TLS == 1 ]]; then
    for name in "${TARGETS[@]}"; do
        [[ -n ${T_HTTPS[$name]:-} ]] || continue
        got=$(timeout 10 openssl s_client -connect "${T_HTTPS[$name]}" -servername localhost </dev/null 2>/dev/null |
            awk -F', ' '/^(New|Reused), / {sub(/^Cipher is /, "", $3); print $2 "/" $3; exit}' || true)
        TLS_INFO+="${TLS_INFO:+, }${T_LABEL[$name]} ${got:-?}"
    done
fi

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

run_wrk() { # name scenario
    local name=$1 s=$2 url out
    url=$(url_of "$name" "$s")
    out=$TMP/wrk-$name-$s-$round.txt
    local args=(-t"$WRK_THREADS" -c"$CONNS" -H 'Host: localhost' ${AUTH[@]+"${AUTH[@]}"})
    local wrk=(${WRK_PIN[@]+"${WRK_PIN[@]}"})
    if [[ $s == handshake || $s == resume ]]; then args+=(-H 'Connection: close'); fi
    if [[ $s == handshake ]]; then wrk+=(${NO_RESUME[@]+"${NO_RESUME[@]}"}); fi
    wrk+=(wrk)
    log "wrk $name $s: warm-up $WARMUP"
    bg_wait timeout "$WRK_LIMIT" "${wrk[@]}" "${args[@]}" -d"$WARMUP" "$url" >/dev/null
    log "wrk $name $s: -t$WRK_THREADS -c$CONNS -d$DURATION $url"
    local pid=${T_PID[$name]} ticks_before=0 ticks_after=0 rss=0
    [[ -n $pid ]] && ticks_before=$(cpu_ticks "$pid")
    bg_wait timeout "$WRK_LIMIT" "${wrk[@]}" "${args[@]}" -d"$DURATION" --latency "$url" >"$out"
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
    [[ -n $rps && -n $p50 && -n $p99 ]] || { cat "$out" >&2; die "could not parse wrk output for $name $s"; }
    # CPU µs per request: the process tree's user+system time over the run / requests.
    local cpu_us
    cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v rps="$rps" -v d="$(secs "$DURATION")" \
        -v known="${pid:+1}" 'BEGIN { if (known && rps > 0) printf "%.1f", t / hz * 1e6 / (rps * d); else print "-" }')
    local line
    line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$name" "$s" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "$xfer" "$((${errs:-0} + ${non2xx:-0}))" "$cpu_us" "$((rss / 1024))")
    echo "$line" >>"$RESULTS"
    log "$(awk -F'\t' '{printf "  %s %s: %.0f req/s, p99 %s ms, %d errors, %s CPU us/req, %s MiB", $1, $2, $3, $5, $7, $8, $9}' <<<"$line")"
}

for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    for s in $SCENARIOS; do
        for name in "${TARGETS[@]}"; do
            [[ -n ${T_SKIP[$name]:-} || -z $(url_of "$name" "$s") ]] && continue
            run_wrk "$name" "$s"
        done
        # Make sure nothing died mid-run.
        for name in "${TARGETS[@]}"; do
            pid=${T_PID[$name]}
            [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || die "$name ($pid) died during the run; see $TMP/$name.log"
        done
        for pid in ${aux_pids[@]+"${aux_pids[@]}"}; do
            kill -0 "$pid" 2>/dev/null || die "a helper process ($pid) died during the run; see $TMP/*.log"
        done
    done
done

# ---------------------------------------------------------------- report
version() { # command... -> its first line of version output
    "$@" 2>&1 | head -n 1 || true
}
TARGETS_TSV=$TMP/targets.tsv
: >"$TARGETS_TSV"
for name in "${TARGETS[@]}"; do
    reason=${T_SKIP[$name]:-}
    if [[ -z $reason && -z ${T_HTTPS[$name]} && $TLS == 1 ]]; then
        case $name in
            pingora) reason="no TLS in examples/pingora_baseline.rs" ;;
            pcore) reason="no TLS in examples/pingora_core_baseline.rs" ;;
            direct) reason="the upstream is plain HTTP" ;;
            *) reason="plain HTTP only" ;;
        esac
        reason="tls:$reason" # only for the TLS scenarios
    fi
    printf '%s\t%s\t%s\n' "$name" "${T_LABEL[$name]}" "$reason" >>"$TARGETS_TSV"
done

echo
echo "keygate side by side — WORKERS=$WORKERS per proxy, wrk -t$WRK_THREADS -c$CONNS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s) interleaved, PROFILE=$PROFILE"
echo "machine: $NCPU CPU(s), $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "placement: $PLACEMENT"
if [[ -n $PLACEMENT_NOTE ]]; then echo "note: $PLACEMENT_NOTE"; fi
if [[ -n $TLS_INFO ]]; then echo "tls (ECDSA P-256 certificate): $TLS_INFO"; fi
hp_version=
if [[ -n $HAPROXY_BIN ]]; then hp_version=", $(version "$HAPROXY_BIN" -v | awk '{print $1, $3}')"; fi
echo "versions: $(version "$NGINX" -v | sed 's/^nginx version: //')$hp_version, $(version wrk -v | awk '{print $1, $2}'), keygate $(git -c safe.directory="$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
echo
echo "every run:"
awk -F'\t' '
    BEGIN { printf "%-16s %-10s %12s %10s %10s %11s %7s %11s %8s\n", "target", "scenario", "req/s", "p50 ms", "p99 ms", "transfer/s", "errors", "CPU us/req", "RSS MiB"
            printf "%-16s %-10s %12s %10s %10s %11s %7s %11s %8s\n", "----------------", "----------", "------------", "----------", "----------", "-----------", "-------", "-----------", "--------" }
    { printf "%-16s %-10s %12.0f %10.2f %10.2f %11s %7d %11s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$RESULTS"

echo
echo "summary (median of $ROUNDS round(s); x nginx = RPS relative to nginx):"
desc_args=()
for s in $SCENARIOS; do desc_args+=(-v "desc_$s=$(scenario_desc "$s")"); done
awk -F'\t' -v scenarios="$SCENARIOS" -v desc_http="" -v desc_https="" -v desc_1m="" -v desc_handshake="" -v desc_resume="" "${desc_args[@]}" '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        if (n == 0) return ""
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function add(arr, k, v) { arr[k] = (k in arr) ? arr[k] " " v : v }
    FNR == NR { order[++nt] = $1; label[$1] = $2; skip[$1] = $3; next }
    {
        k = $1 SUBSEP $2; add(rps, k, $3); add(p99, k, $5); errs[k] += $7
        if ($8 != "-") add(cpu, k, $8)
        add(rss, k, $9)
    }
    END {
        desc["http"] = desc_http; desc["https"] = desc_https; desc["1m"] = desc_1m; desc["handshake"] = desc_handshake; desc["resume"] = desc_resume
        ns = split(scenarios, sc, " ")
        fmt = "%-26s %10s %8s %9s %11s %8s %7s\n"
        for (i = 1; i <= ns; i++) {
            s = sc[i]; tls = (s == "https" || s == "handshake" || s == "resume")
            printf "\n%s — %s\n", s, desc[s]
            printf fmt, "target", "req/s", "x nginx", "p99 ms", "CPU us/req", "RSS MiB", "errors"
            printf fmt, "--------------------------", "----------", "--------", "---------", "-----------", "--------", "-------"
            ng = median(rps["nginx" SUBSEP s])
            for (t = 1; t <= nt; t++) {
                n = order[t]; k = n SUBSEP s
                if (!(k in rps)) {
                    why = skip[n]
                    if (why ~ /^tls:/) { if (!tls) continue; sub(/^tls:/, "", why) }
                    if (why == "") continue
                    printf "%-26s %10s  (skipped: %s)\n", label[n], "-", why
                    continue
                }
                r = median(rps[k])
                x = (ng > 0) ? sprintf("%.2f", r / ng) : "-"
                c = (k in cpu) ? sprintf("%.1f", median(cpu[k])) : "-"
                printf "%-26s %10.0f %8s %9.2f %11s %8.0f %7d\n", label[n], r, x, median(p99[k]), c, median(rss[k]), errs[k]
                med[n] = r
            }
            kg = med["keygate"]
            if (kg > 0 && med["pingora"] > 0) printf "keygate / bare pingora: %.2f\n", kg / med["pingora"]
            if (med["pingora"] > 0 && med["pcore"] > 0) printf "bare pingora / pingora-core only: %.2f\n", med["pingora"] / med["pcore"]
            if (kg > 0 && med["kg-policies"] > 0) {
                q = med["kg-policies"] / kg
                printf "keygate+policies / keygate: %.2f (target >= 0.95)%s\n", q, (q < 0.95) ? "  below target" : ""
            }
            if (kg > 0 && med["kg-rl"] > 0) printf "ratelimit (memory) / keygate: %.2f (target >= 0.90)\n", med["kg-rl"] / kg
            if (kg > 0 && med["kg-rl-redis"] > 0) printf "ratelimit (redis) / keygate: %.2f (target >= 0.75)\n", med["kg-rl-redis"] / kg
            if (kg > 0 && med["kg-trace"] > 0) printf "tracing (ratio 1.0) / keygate: %.2f (target >= 0.90)\n", med["kg-trace"] / kg
            delete med
        }
    }' "$TARGETS_TSV" "$RESULTS"

if [[ $TRACING == 1 ]]; then
    received=$(curl -sS -m 5 "http://$OTLP_ADDR/count" || echo "?")
    dropped=$(curl -sS -m 5 "http://$KG_TR_ADMIN/metrics" | awk '/^keygate_trace_spans_dropped_total/ {print $2}' || true)
    echo "tracing: spans received by the collector $received, dropped by keygate ${dropped:-?}"
fi
if awk -F'\t' '$7 > 0 {found = 1} END {exit !found}' "$RESULTS"; then
    echo
    echo "warning: some runs had errors or non-2xx responses (see the errors column)"
fi
