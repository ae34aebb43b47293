#!/usr/bin/env bash
# idle-memory.sh — what idle keep-alive connections cost keygate, and whether
# the memory comes back when they close.
#
# Usage (from anywhere; the script cd's to the repo root):
#     scripts/idle-memory.sh
#     CONNS=20000 PROFILE=release scripts/idle-memory.sh
#
# Starts keygate with the default config (config/keygate.yaml: one worker per
# core, embedded state, `localhost` -> builtin:echo) on private ports and a
# temporary state dir, then prints its RSS:
#   1. idle, after one request;
#   2. with $CONNS client connections open, each idle after one keep-alive
#      request (the per-connection cost is the difference / $CONNS);
#   3. $SETTLE after all of them closed (memory returned to the system).
# A Python asyncio client opens the connections (no third-party packages).
#
# Environment (defaults in brackets): PROFILE [release]  CONNS [5000]
#   SETTLE [5s]  KG_HTTP [127.0.0.1:18090]  KG_ADMIN [127.0.0.1:19990]
#   SKIP_BUILD [0]  KEYGATE_BIN [target/$PROFILE/keygate] (another keygate binary)
set -euo pipefail

cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-release}
CONNS=${CONNS:-5000}
SETTLE=${SETTLE:-5s}
KG_HTTP=${KG_HTTP:-127.0.0.1:18090}
KG_ADMIN=${KG_ADMIN:-127.0.0.1:19990}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --profile "$PROFILE" --bin keygate
fi
BIN=${KEYGATE_BIN:-target/$PROFILE/keygate}
TMP=$(mktemp -d)
KG_PID=
cleanup() {
    [[ -n $KG_PID ]] && kill "$KG_PID" 2>/dev/null && wait "$KG_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

sed -e "s|http: \"127.0.0.1:8080\"|http: \"$KG_HTTP\"|" \
    -e "s|admin: \"127.0.0.1:9901\"|admin: \"$KG_ADMIN\"|" \
    config/keygate.yaml >"$TMP/keygate.yaml"
ulimit -n $((CONNS + 1024)) 2>/dev/null || echo "warning: cannot raise the descriptor limit to $((CONNS + 1024))"
"$BIN" run --config "$TMP/keygate.yaml" >"$TMP/keygate.log" 2>&1 &
KG_PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://$KG_ADMIN/readyz" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null -H 'Host: localhost' "http://$KG_HTTP/" || { cat "$TMP/keygate.log"; exit 1; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$KG_PID/status"; }
idle=$(rss_kib)
printf 'idle RSS (after one request):            %6d KiB\n' "$idle"

python3 - "$KG_HTTP" "$CONNS" "$KG_PID" "$SETTLE" <<'EOF'
import asyncio, sys, time

addr, conns, pid, settle = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
host, port = addr.rsplit(":", 1)
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])

async def one():
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return writer

async def main():
    before = rss()
    writers = []
    for start in range(0, conns, 500):
        writers += await asyncio.gather(*(one() for _ in range(start, min(conns, start + 500))))
    await asyncio.sleep(1)
    held = rss()
    print(f"RSS with {conns} idle connections:        {held:6d} KiB  ({(held - before) * 1024 / conns / 1024:.1f} KiB per connection)")
    for w in writers:
        w.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    seconds = float(settle.rstrip("s"))
    await asyncio.sleep(seconds)
    print(f"RSS {settle} after they closed:             {rss():6d} KiB")

asyncio.run(main())
EOF
