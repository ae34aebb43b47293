# workload.sh — sourced, not run: the gateway a build profile is recorded
# from and the requests that drive it, shared by scripts/code-layout.sh
# (which functions run, for the linker's code order) and scripts/build-pgo.sh
# (which branches are taken, for the compiler). One workload, so the two
# profiles describe the same gateway.
#
# The caller sets ROOT, TMP, UPSTREAM (where examples/bench_upstream
# listens), PORT (HTTP; HTTPS is PORT+1, the admin API PORT+10) and
# ROOT_KEY, and defines log and die. Needs curl and openssl.

# Writes $TMP/keygate.yaml and a self-signed certificate: one worker
# thread; plain HTTP, HTTPS and the admin API; route `localhost` without
# policies and `pol.localhost` with the benchmarks' policy chain. Sets
# HTTP, HTTPS and ADMIN.
workload_config() {
    mkdir -p "$TMP/tls" "$TMP/state"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,DNS:pol.localhost \
        -keyout "$TMP/tls/default.key" -out "$TMP/tls/default.crt" >"$TMP/openssl.log" 2>&1 ||
        die "openssl could not make a certificate"
    HTTP=127.0.0.1:$PORT HTTPS=127.0.0.1:$((PORT + 1)) ADMIN=127.0.0.1:$((PORT + 10))
    cat >"$TMP/keygate.yaml" <<EOF
listen:
  http: "$HTTP"
  https: "$HTTPS"
  admin: "$ADMIN"
  threads: 1
tls:
  redirect_http: false
  certs_dir: "$TMP/tls"
state:
  dir: $TMP/state
admin:
  root_keys: ["$ROOT_KEY"]
keyspaces:
  - id: ks_bench
deployments:
  - id: plain
    instances: ["$UPSTREAM"]
  - id: guarded
    instances: ["$UPSTREAM"]
$(cat "$ROOT/scripts/bench/policy-chain.yaml")
routes:
  - host: localhost
    deployment: plain
  - host: pol.localhost
    deployment: guarded
EOF
}

# Waits (at most a minute) until the keygate with process id $1 answers.
workload_wait() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null -H 'Host: localhost' "http://$HTTP/small" && return 0
        kill -0 "$1" 2>/dev/null || die "keygate exited: $(tail -5 "$TMP/keygate.log")"
        sleep 0.2
    done
    die "keygate did not answer within a minute"
}

# What a gateway does: an API key created through the admin API, small and
# 1 MiB keep-alive requests over HTTP and HTTPS, with and without the
# policy chain, HTTP/2, full TLS handshakes, 16 connections at once, the
# dashboard's stats, a config reload. Every request must be answered 200.
workload_drive() {
    local key auth tls
    key=$(curl -sS -X POST -H "Authorization: Bearer $ROOT_KEY" -H 'Content-Type: application/json' \
        -d '{"apiId": "ks_bench", "name": "workload"}' "http://$ADMIN/v2/keys.createKey" |
        sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')
    [[ -n $key ]] || die "the admin API did not create a key"
    auth="Authorization: Bearer $key"
    tls=(-sk --resolve "localhost:${HTTPS##*:}:127.0.0.1" --resolve "pol.localhost:${HTTPS##*:}:127.0.0.1")
    local https=https://localhost:${HTTPS##*:} pol_https=https://pol.localhost:${HTTPS##*:}

    workload_expect_200 "http" -H 'Host: localhost' "http://$HTTP/small?[1-300]"
    workload_expect_200 "http, policies" -H 'Host: pol.localhost' -H "$auth" "http://$HTTP/small?[1-300]"
    workload_expect_200 "https" "${tls[@]}" "$https/small?[1-300]"
    workload_expect_200 "https, policies" "${tls[@]}" -H "$auth" "$pol_https/small?[1-300]"
    workload_expect_200 "h2" "${tls[@]}" --http2 "$https/small?[1-100]"
    workload_expect_200 "1 MiB" -H 'Host: localhost' "http://$HTTP/1m?[1-20]"
    workload_expect_200 "1 MiB, https" "${tls[@]}" "$https/1m?[1-20]"
    for _ in $(seq 1 10); do workload_expect_200 "handshake" "${tls[@]}" "$https/small"; done
    # Sixteen connections at once: curl --parallel rather than wrk, which
    # stops with requests in flight. (No metrics scrape: callgrind 3.19
    # aborts on the process collector's auxv probe in rustix.)
    workload_expect_200 "http, 16 at once" -Z --parallel-max 16 -H 'Host: localhost' "http://$HTTP/small?[1-2000]"
    workload_expect_200 "https, policies, 16 at once" -Z --parallel-max 16 "${tls[@]}" -H "$auth" "$pol_https/small?[1-1000]"
    curl -sf -o /dev/null -H "Authorization: Bearer $ROOT_KEY" "http://$ADMIN/v1/stats" || die "stats failed"
    curl -sf -o /dev/null -X POST -H "Authorization: Bearer $ROOT_KEY" -H 'Content-Type: application/json' \
        -d '{}' "http://$ADMIN/v1/admin.reload" || die "reload failed"
    workload_expect_200 "after the reload" -H 'Host: localhost' "http://$HTTP/small?[1-50]"
}

# A label, then curl arguments: every URL must be answered 200.
workload_expect_200() {
    local codes
    codes=$(curl -s --no-progress-meter -o /dev/null -w '%{http_code}\n' "${@:2}" | sort -u | tr '\n' ' ')
    [[ $codes == "200 " ]] || die "$1: answered $codes"
}
