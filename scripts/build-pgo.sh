#!/usr/bin/env bash
# build-pgo.sh — builds keygate with profile-guided optimisation: the
# compiler lays out branches, inlines and places code by what a running
# gateway actually does, not by guesses.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/build-pgo.sh        # prints the binary's path last
#
# What it does:
#   1. builds keygate instrumented (RUSTFLAGS=-Cprofile-generate, for the
#      host target given explicitly, so build scripts and proc macros are
#      not instrumented) in target/pgo-generate, and examples/bench_upstream
#      (release)
#   2. runs the instrumented keygate natively with the workload of
#      scripts/bench/workload.sh (the one scripts/code-layout.sh records:
#      HTTP, HTTPS, the policy chain, HTTP/2, 1 MiB responses, handshakes,
#      the admin API, a reload), then stops it with SIGTERM, which is when
#      it writes its counts
#   3. merges them with llvm-profdata of rustc's own LLVM major version
#      (Debian's llvm-<major>, installed with apt-get when missing)
#   4. builds keygate again with RUSTFLAGS=-Cprofile-use in target/pgo:
#      target/pgo/<host>/$PROFILE/keygate (with link/keygate.order applied,
#      as in every optimised build)
#
# The two builds are whole builds (RUSTFLAGS changes every crate): on two
# cores ~25 minutes for `production`. scripts/bench-proxy.sh measures the
# result with KEYGATE_BIN=<that path>.
#
# Settings: PROFILE [production]  UPSTREAM [127.0.0.1:9320]
#   PORT [18460] (HTTP; HTTPS PORT+1, admin PORT+10)
# Needs curl and openssl (and llvm-<major>), installed with apt-get when missing.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${PROFILE:-production}
UPSTREAM=${UPSTREAM:-127.0.0.1:9320}
PORT=${PORT:-18460}
ROOT_KEY=e07c6dbefc2c57c957c290720b166f44ac4447c4269e9ee0
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf '[build-pgo] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
source "$ROOT/scripts/bench/common.sh"

HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[[ -n $HOST && -n $LLVM_MAJOR ]] || die "rustc -vV names no host or LLVM version"
PROFDATA=$(command -v "llvm-profdata-$LLVM_MAJOR" || true)

missing=()
for tool in curl openssl; do command -v $tool >/dev/null || missing+=($tool); done
[[ -n $PROFDATA ]] || missing+=("llvm-$LLVM_MAJOR")
bench_apt_install ${missing[@]+"${missing[@]}"} ||
    die "could not install ${missing[*]} (rustc's LLVM is $LLVM_MAJOR: its profiles need that llvm-profdata)"
[[ -n $PROFDATA ]] || PROFDATA=$(command -v "llvm-profdata-$LLVM_MAJOR") || die "llvm-profdata-$LLVM_MAJOR not found"

bench_tmp pgo

# Fixed paths, so that a second run reuses what the first one compiled
# (rustc lists the profile among every crate's inputs: a new one rebuilds them).
COUNTS=$TARGET/pgo-generate/counts
PROFILE_DATA=$TARGET/pgo/keygate.profdata
rm -rf "$COUNTS"
mkdir -p "$TARGET/pgo"

log "building keygate instrumented ($PROFILE, $HOST)"
RUSTFLAGS="-Cprofile-generate=$COUNTS" \
    cargo build --locked --profile "$PROFILE" --bin keygate --target "$HOST" --target-dir "$TARGET/pgo-generate"
cargo build --locked --release --example bench_upstream

source "$ROOT/scripts/bench/workload.sh"
workload_config
"$TARGET/release/examples/bench_upstream" "$UPSTREAM" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
"$TARGET/pgo-generate/$HOST/$PROFILE/keygate" run --config "$TMP/keygate.yaml" >"$TMP/keygate.log" 2>&1 &
KEYGATE=$!
PIDS+=($KEYGATE)
workload_wait "$KEYGATE"
log "driving requests"
workload_drive
kill -TERM "$KEYGATE"
for _ in $(seq 1 150); do kill -0 "$KEYGATE" 2>/dev/null || break; sleep 0.2; done
kill -0 "$KEYGATE" 2>/dev/null && die "keygate did not stop within 30 s of SIGTERM"
compgen -G "$COUNTS/*.profraw" >/dev/null || die "the instrumented keygate wrote no counts"

"$PROFDATA" merge -o "$PROFILE_DATA" "$COUNTS"
log "building keygate with the profile"
RUSTFLAGS="-Cprofile-use=$PROFILE_DATA" \
    cargo build --locked --profile "$PROFILE" --bin keygate --target "$HOST" --target-dir "$TARGET/pgo"
log "built:"
echo "$TARGET/pgo/$HOST/$PROFILE/keygate"
