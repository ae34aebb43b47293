#!/usr/bin/env bash
# code-layout.sh — writes link/keygate.order: the functions a running gateway
# executes, hottest first, for the linker to place together at the start of
# `.text` (build.rs passes it to lld as --symbol-ordering-file).
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/code-layout.sh                  # build, record, write link/keygate.order
#     CHECK=1 scripts/code-layout.sh          # only report how the current binary is laid out
#
# Why: the executable has ~31 MB of code. Left in the compiler's order, the
# ~4 MB a gateway runs is spread over all of it, and the kernel maps code in
# 64 KiB windows around each page touched (fault-around), so ~16 MB of
# code was resident under load. Placed together it is ~4 MB, and the
# hottest functions share cache lines and TLB entries.
#
# What it does:
#   1. cargo build --profile $PROFILE --bin keygate, then --example
#      bench_upstream on its own (SKIP_BUILD=1 skips)
#   2. starts examples/bench_upstream, then keygate under
#      `valgrind --tool=callgrind --demangle=no`, configured and driven by
#      scripts/bench/workload.sh (shared with scripts/build-pgo.sh): one
#      worker thread, plain HTTP, HTTPS, the admin API, a route without
#      policies and one with the benchmarks' policy chain; start-up, an API
#      key, small and 1 MiB keep-alive requests, HTTP/2, full TLS
#      handshakes, 16 connections at once, the dashboard's stats, a reload
#   4. writes every keygate function that ran, by instructions spent in it
#      (most first), to link/keygate.order, and reports the layout
#
# The names are the mangled symbols; a function whose name changes (its
# code or its crate changed) is simply not placed, so the file goes stale
# slowly and harmlessly: rerun this after large changes. The report's
# "found" share says how much of the file the current binary still matches.
# Thin-LTO builds (`release`) also get the `.llvm.<hash>` names their
# modules gave local functions; those change with any edit of the module.
#
# Settings: PROFILE [production]  SKIP_BUILD [0]  CHECK [0]
#   UPSTREAM [127.0.0.1:9310]  PORT [18420] (HTTP; HTTPS PORT+1, admin PORT+10)
# Needs valgrind, curl and openssl (installed with apt-get when missing).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${PROFILE:-production}
SKIP_BUILD=${SKIP_BUILD:-0}
CHECK=${CHECK:-0}
UPSTREAM=${UPSTREAM:-127.0.0.1:9310}
PORT=${PORT:-18420}
ORDER=$ROOT/link/keygate.order
ROOT_KEY=e07c6dbefc2c57c957c290720b166f44ac4447c4269e9ee0
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE

log() { printf '[code-layout] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
source "$ROOT/scripts/bench/common.sh"

# How much of the order file the binary matches, and how far the code it
# names is spread (pages, 64 KiB fault-around windows, span).
report() {
    nm -S --defined-only "$BIN/keygate" | python3 -c '
import sys
order = [line.strip() for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")]
where = {}
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tT":
        where[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
placed = [where[name] for name in order if name in where]
pages = {page for start, size in placed for page in range(start // 4096, (start + max(size, 1) - 1) // 4096 + 1)}
span = (max(s + n for s, n in placed) - min(s for s, n in placed)) / 2**20 if placed else 0
print(f"{len(placed)} of {len(order)} names found in the binary; their code: "
      f"{sum(n for s, n in placed) / 2**20:.1f} MiB in {len(pages)} pages, "
      f"{len({p // 16 for p in pages})} 64 KiB windows, spanning {span:.1f} MiB")
' "$ORDER"
}

if [[ $CHECK == 1 ]]; then
    [[ -x $BIN/keygate ]] || die "missing $BIN/keygate (build it first)"
    report
    exit 0
fi

missing=()
for tool in valgrind curl openssl; do command -v $tool >/dev/null || missing+=($tool); done
bench_apt_install ${missing[@]+"${missing[@]}"} ||
    die "could not install ${missing[*]}"

if [[ $SKIP_BUILD != 1 ]]; then
    log "building $PROFILE binaries"
    # keygate on its own: built beside the examples it would get their
    # dev-dependencies' features, and so other code and symbols than the
    # binary that is shipped (and link/keygate.order is made for).
    cargo build --profile "$PROFILE" --bin keygate
    cargo build --profile "$PROFILE" --example bench_upstream
fi
for b in keygate examples/bench_upstream; do [[ -x $BIN/$b ]] || die "missing $BIN/$b"; done

bench_tmp code-layout

source "$ROOT/scripts/bench/workload.sh"
workload_config

"$BIN/examples/bench_upstream" "$UPSTREAM" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$TMP/callgrind.out" \
    "$BIN/keygate" run --config "$TMP/keygate.yaml" >"$TMP/keygate.log" 2>&1 &
KEYGATE=$!
PIDS+=($KEYGATE)

log "starting keygate under callgrind (~50x slower than native)"
workload_wait "$KEYGATE"
log "driving requests"
workload_drive

# A dump, not a signal: callgrind writes its file on `--dump` and keygate
# stays up until it is killed with the rest.
callgrind_control --dump "$KEYGATE" >/dev/null
for _ in $(seq 1 100); do
    [[ -s $TMP/callgrind.out.1 ]] && grep -q '^totals:' "$TMP/callgrind.out.1" && break
    sleep 0.3
done
grep -q '^totals:' "$TMP/callgrind.out.1" 2>/dev/null || die "callgrind wrote no profile"

python3 - "$TMP/callgrind.out.1" "$BIN/keygate" "$ORDER" <<'EOF'
# Self instructions per function of the keygate executable, from
# callgrind's compressed format ("fn=(id) name" once, "fn=(id)" after).
import os, re, sys
profile, executable, order_file = sys.argv[1:]
executable = os.path.realpath(executable)
names, objects = {}, {}
obj = func = None
after_calls = False
spent = {}

def resolve(table, text):
    m = re.match(r"\((\d+)\)(?: (.*))?$", text)
    if not m:
        return text
    if m.group(2) is not None:
        table[m.group(1)] = m.group(2)
    return table[m.group(1)]

for line in open(profile, errors="replace"):
    line = line.rstrip("\n")
    key, _, value = line.partition("=")
    if key == "ob":
        obj = os.path.realpath(resolve(objects, value))
    elif key == "cob":
        resolve(objects, value)
    elif key == "fn":
        func, after_calls = resolve(names, value), False
    elif key == "cfn":
        resolve(names, value)
    elif key == "calls":
        after_calls = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        if after_calls:  # the inclusive cost of a call, not the caller's own
            after_calls = False
            continue
        fields = line.split()
        if len(fields) >= 2 and obj == executable:
            spent[func] = spent.get(func, 0) + int(fields[1])

hottest = sorted((cost, name) for name, cost in spent.items() if cost > 0 and not name.startswith("0x"))
with open(order_file, "w") as out:
    out.write("# Generated by scripts/code-layout.sh: keygate's functions that ran, most\n"
              "# instructions first, for lld's --symbol-ordering-file (see build.rs).\n")
    for _, name in reversed(hottest):
        out.write(name + "\n")
        bare = re.sub(r"\.llvm\.\d+$", "", name)
        if bare != name:  # thin LTO's name for a local; fat LTO keeps the bare one
            out.write(bare + "\n")
print(f"[code-layout] {len(hottest)} functions ran", file=sys.stderr)
EOF
log "wrote ${ORDER#$ROOT/}"
log "the binary it was recorded from (rebuild to lay the new order out):"
report
