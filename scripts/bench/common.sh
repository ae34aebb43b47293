# common.sh — sourced, not run: what the scripts that profile or count a
# running keygate share (scripts/code-layout.sh, scripts/build-pgo.sh,
# scripts/bench-instructions.sh). The caller defines log and die.

# A private temp dir, $TMP, named after $1 for this run. The processes
# whose ids the caller adds to PIDS are killed on exit; the dir is removed
# then, unless the run failed or KEEP=1.
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/keygate-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
    if [[ $rc == 0 && ${KEEP:-0} != 1 ]]; then rm -rf "$TMP"; else log "temp dir kept: $TMP"; fi
}

# Installs the Debian packages named, if any (as root, or through sudo -n).
bench_apt_install() {
    (($#)) || return 0
    log "installing: $*"
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo -n)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
