#!/usr/bin/env bash
# Durability order: every acknowledged write's WAL sync happens before its acknowledgement
# leaves the process. Runs a hub under `strace -f`, sends concurrent PUTs and DELETEs, then
# matches WAL syncs to responses with scripts/durability-order.py (violations must be 0).
#
#   scripts/durability-order.sh [WRITES] [CONCURRENCY] [sync|buffered]
#
# `buffered` runs the node with --durability=buffered (acknowledge before fsync) and expects
# violations: it shows that the check can fail.
# Needs strace and curl (Debian packages); uses the debug binary the test build makes.
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES="${1:-400}"
CONC="${2:-8}"
MODE="${3:-sync}"
command -v strace >/dev/null || { echo "strace is needed: apt-get install strace" >&2; exit 1; }
# The same build as the test command, so CI pays nothing extra for it.
cargo test --workspace --no-run --quiet 2>/dev/null || cargo test --workspace --no-run
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/sessionfleet"
WORK="$(mktemp -d)"
PID=""
# $PID is strace; the hub is its child (SIGTERM to strace would only detach it).
stop() { pkill -TERM -P "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }
cleanup() { [ -n "$PID" ] && stop; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$((20000 + RANDOM % 20000))
# Writes need credentials: an admin token in a fresh secrets file.
"$BIN" secrets init "$WORK/secrets.toml" --iterations 1000 >/dev/null 2>&1
TOKEN=$("$BIN" secrets token "$WORK/secrets.toml" durability-check --role admin 2>/dev/null)
export AUTH="Authorization: Bearer $TOKEN"
strace -f -tt -T -yy -s 64 -o "$WORK/trace" \
  -e trace=read,recvfrom,readv,write,writev,sendto,sendmsg,fsync,fdatasync \
  "$BIN" hub --durability "$MODE" --data-dir "$WORK/data" --http "127.0.0.1:$PORT" --grpc "127.0.0.1:$((PORT + 1))" \
  --secrets "$WORK/secrets.toml" \
  > "$WORK/hub.out" 2> "$WORK/hub.err" &
PID=$!
for _ in $(seq 300); do grep -q '^ready' "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$WORK/hub.out" || { cat "$WORK/hub.err" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT"
curl -fsS -H "$AUTH" -X PUT "$BASE/sessions" >/dev/null
# Half creates, then deletes of the first quarter: both kinds of acknowledged write.
seq "$WRITES" | xargs -P "$CONC" -I{} curl -fsS -H "$AUTH" -o /dev/null -X PUT "$BASE/sessions/s{}" -d '{"user":{}}'
seq $((WRITES / 4)) | xargs -P "$CONC" -I{} sh -c \
  'rev=$(curl -fsS -H "$AUTH" "$0/sessions/s$1" | sed "s/.*\"_rev\":\"\([^\"]*\)\".*/\1/"); curl -fsS -H "$AUTH" -o /dev/null -X DELETE "$0/sessions/s$1?rev=$rev"' "$BASE" {}
stop
if [ "$MODE" = buffered ]; then
  if python3 scripts/durability-order.py "$WORK/trace"; then
    echo "buffered durability showed no violation: the check cannot tell" >&2; exit 1
  fi
  echo "buffered durability: violations found, as they must be"
else
  python3 scripts/durability-order.py "$WORK/trace"
fi
