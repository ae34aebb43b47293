#!/usr/bin/env bash
# bench-instructions.sh — user-space instructions per proxied request, counted
# by valgrind (callgrind), for nginx, pingora-core alone, bare pingora,
# keygate and keygate+policies.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/bench-instructions.sh
#     N=5000 TOP=25 scripts/bench-instructions.sh     # more requests; keygate's 25 costliest functions
#
# Why: req/s and CPU time on a shared 2-vCPU VM move by ±10 % between runs,
# so a change worth 3 % cannot be seen with wrk (scripts/bench-proxy.sh).
# An instruction count is deterministic (runs agree within 0.5 %) and
# covers exactly the part a proxy's own code decides: the kernel's socket
# work, which is the same for every proxy here, is not counted. It is not
# a time: copies (`rep movsb`) count one per byte and cache misses not at
# all, so read it beside bench-proxy.sh's CPU µs per request, not instead.
#
# What it does:
#   1. cargo build --profile $PROFILE --bin keygate, then (a second build,
#      so that keygate is the binary that is shipped) --example bench_upstream
#      --example pingora_baseline --example pingora_core_baseline (SKIP_BUILD=1 skips)
#   2. starts examples/bench_upstream on $UPSTREAM (natively)
#   3. for each target, one after the other: starts it under
#      `valgrind --tool=callgrind` with one worker thread, waits until it
#      answers, sends 1,200 warm-up requests (past the 1,000 slots of
#      keygate's recent-requests ring, so its first-fill allocations are
#      not counted: a gateway that has run a while never makes them),
#      resets the counters (a callgrind
#      dump), sends N requests — `GET /small`, `Host: localhost`, one
#      keep-alive connection (curl), each answered 200 — dumps again and
#      divides the instructions of that dump by N
#   4. prints instructions per request and the ratio to nginx; with TOP=n,
#      keygate's n costliest functions (inclusive, per request; keygate+policies'
#      when keygate did not run)
#
# Targets: nginx (worker_processes 1, master_process off, upstream keepalive),
# pingora-core only and bare pingora (examples/pingora_core_baseline.rs and
# pingora_baseline.rs), keygate (one route, one deployment) and
# keygate+policies (firewall, ip, keyauth with a key created through the
# admin API, in-memory ratelimit; the chain scripts/bench-proxy.sh uses).
#
# Settings: N [2000]  TOP [0]  PROFILE [release]  SKIP_BUILD [0]
#   KEYGATE_BIN [target/$PROFILE/keygate] (another keygate binary: scripts/build-pgo.sh's, say)
#   TARGETS [all five: "nginx pingora-core-only bare-pingora keygate keygate+policies"]
#   KEEP [0] (1 keeps the callgrind files, named at the end, for callgrind_annotate --tree=caller)
#   UPSTREAM [127.0.0.1:9300]  PORT [18300] (targets use PORT..PORT+4, keygate's admin PORT+10..)
# Needs valgrind, nginx and curl (installed with apt-get when missing).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-2000}
TOP=${TOP:-0}
PROFILE=${PROFILE:-release}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
UPSTREAM=${UPSTREAM:-127.0.0.1:9300}
PORT=${PORT:-18300}
ROOT_KEY=e07c6dbefc2c57c957c290720b166f44ac4447c4269e9ee0

log() { printf '[instructions] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
source "$ROOT/scripts/bench/common.sh"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer (got '$N')"

bench_tmp instructions

find_sbin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true; }
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v curl >/dev/null || missing+=(curl)
[[ -n $(find_sbin nginx) ]] || missing+=(nginx-light)
bench_apt_install ${missing[@]+"${missing[@]}"} ||
    die "could not install ${missing[*]}"
NGINX=$(find_sbin nginx)

if [[ $SKIP_BUILD != 1 ]]; then
    log "building $PROFILE binaries"
    # keygate on its own: built beside the examples it would get their
    # dev-dependencies' features, and so other code and symbols than the
    # binary that is shipped (and link/keygate.order is made for).
    cargo build --profile "$PROFILE" --bin keygate
    cargo build --profile "$PROFILE" --example bench_upstream --example pingora_baseline --example pingora_core_baseline
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
KEYGATE_BIN=${KEYGATE_BIN:-$BIN/keygate}
for b in "$KEYGATE_BIN" "$BIN"/examples/{bench_upstream,pingora_baseline,pingora_core_baseline}; do
    [[ -x $b ]] || die "missing $b"
done

"$BIN/examples/bench_upstream" "$UPSTREAM" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)

keygate_config() { # dir port admin_port with_policies
    local policies=
    if [[ $4 == 1 ]]; then
        policies=$(cat "$ROOT/scripts/bench/policy-chain.yaml")
    fi
    cat >"$1/keygate.yaml" <<EOF
listen:
  http: "127.0.0.1:$2"
  admin: "127.0.0.1:$3"
  threads: 1
state:
  dir: $1/state
admin:
  root_keys: ["$ROOT_KEY"]
keyspaces:
  - id: ks_bench
deployments:
  - id: bench
    instances: ["$UPSTREAM"]
$policies
routes:
  - host: localhost
    deployment: bench
EOF
}

nginx_config() { # dir port
    mkdir -p "$1/logs" "$1/tmp"
    cat >"$1/nginx.conf" <<EOF
$([[ $(id -u) == 0 ]] && echo "user root;")
worker_processes 1;
master_process off;
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi; uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
    keepalive_requests 100000;
    upstream bench { server $UPSTREAM; keepalive 64; }
    server {
        listen 127.0.0.1:$2;
        location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
}

# Runs the command under callgrind and sets IR[name] to its instructions per request.
measure() { # name port auth_header command...
    local name=$1 port=$2 auth=$3 dir=$TMP/$1 pid i codes
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$@" >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for ((i = 0; i < 600; i++)); do
        curl -s -o /dev/null -H 'Host: localhost' "http://127.0.0.1:$port/small" && break
        kill -0 "$pid" 2>/dev/null || die "$name exited; see $dir/log"
        sleep 0.2
    done
    # The key is created once the target answers (keygate+policies only).
    if [[ $auth == key ]]; then
        auth="Authorization: Bearer $(curl -sS -X POST -H "Authorization: Bearer $ROOT_KEY" -H 'Content-Type: application/json' \
            -d '{"apiId": "ks_bench", "name": "bench"}' "http://127.0.0.1:$((port + 10))/v2/keys.createKey" |
            sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')"
    fi
    curl -s -o /dev/null -H 'Host: localhost' -H "$auth" "http://127.0.0.1:$port/small?[1-1200]"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    rm -f "$dir"/callgrind.out*
    codes=$(curl -s -o /dev/null -w '%{http_code}\n' -H 'Host: localhost' -H "$auth" "http://127.0.0.1:$port/small?[1-$N]" | sort -u)
    [[ $codes == 200 ]] || die "$name answered $codes (expected only 200); see $dir/log"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    IR[$name]=$(awk -v n="$N" '/^totals:/ { s += $2 } END { printf "%.0f", s / n }' "$dir"/callgrind.out*)
}

declare -A IR
all_targets=(nginx pingora-core-only bare-pingora keygate keygate+policies)
read -r -a targets <<<"${TARGETS:-${all_targets[*]}}"
for t in "${all_targets[@]}"; do mkdir -p "$TMP/$t"; done
wanted() { [[ " ${targets[*]} " == *" $1 "* ]]; }
nginx_config "$TMP/nginx" "$PORT"
keygate_config "$TMP/keygate" $((PORT + 3)) $((PORT + 13)) 0
keygate_config "$TMP/keygate+policies" $((PORT + 4)) $((PORT + 14)) 1
log "counting $N requests per target (valgrind makes each target ~50x slower)"
IR[nginx]=0
wanted nginx && measure nginx "$PORT" "Authorization: Bearer none" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log"
wanted pingora-core-only && measure pingora-core-only $((PORT + 1)) "Authorization: Bearer none" "$BIN/examples/pingora_core_baseline" "127.0.0.1:$((PORT + 1))" "$UPSTREAM"
wanted bare-pingora && measure bare-pingora $((PORT + 2)) "Authorization: Bearer none" "$BIN/examples/pingora_baseline" "127.0.0.1:$((PORT + 2))" "$UPSTREAM"
wanted keygate && measure keygate $((PORT + 3)) "Authorization: Bearer none" "$KEYGATE_BIN" run --config "$TMP/keygate/keygate.yaml"
wanted keygate+policies && measure keygate+policies $((PORT + 4)) key "$KEYGATE_BIN" run --config "$TMP/keygate+policies/keygate.yaml"

printf '\nuser-space instructions per request (GET /small, keep-alive, %s requests, %s build; keygate: %s)\n' \
    "$N" "$PROFILE" "${KEYGATE_BIN#$ROOT/}"
printf '%-20s %12s %10s\n' target instructions "x nginx"
for t in "${targets[@]}"; do
    printf '%-20s %12s %10s\n' "$t" "${IR[$t]}" "$(awk -v a="${IR[$t]}" -v b="${IR[nginx]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
done

if ((TOP > 0)); then
    # The costliest functions of keygate, or of keygate+policies when only
    # that one ran. Frames holding more than 90 % of the total are the
    # runtime's (thread start, task poll): left out.
    top_target=keygate
    [[ -n ${IR[keygate]:-} ]] || top_target=keygate+policies
    if [[ -n ${IR[$top_target]:-} ]]; then
        printf '\n%s: the %s costliest functions, instructions per request (inclusive)\n' "$top_target" "$TOP"
        callgrind_annotate --inclusive=yes "$TMP/$top_target"/callgrind.out* 2>/dev/null |
            awk -v n="$N" -v total="${IR[$top_target]}" -v top="$TOP" '
                / PROGRAM TOTALS/ { next }
                match($0, /^ *[0-9,]+ \(/) {
                    v = $1; gsub(",", "", v); v /= n
                    name = $0; sub(/^[^)]*\) +/, "", name); sub(/^[^:]*:/, "", name); sub(/ \[[^]]*\]$/, "", name)
                    if (v < 0.9 * total && shown++ < top) printf "%10.0f  %s\n", v, name
                }'
    fi
fi
