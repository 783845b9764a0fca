#!/usr/bin/env bash
# The server benchmark, in one go on this machine: our HTTP GET, gRPC Get and
# durable PUT against a real hub, beside redis-server GET/SET driven by
# redis-benchmark at the same value size and concurrency. Writes the table into
# BENCHMARKS.md between the "server" markers. Needs redis-server (Debian's
# redis-server package); builds the release binary.
#
#   scripts/bench.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-32}"
SECS="${2:-10}"
VALUE=1024
KEYS=10000

command -v redis-server >/dev/null || { echo "redis-server is needed: apt-get install redis-server" >&2; exit 1; }
cargo build --release --workspace --bins
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/sessionfleet"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" secrets init "$WORK/secrets.toml" --iterations 1000 >/dev/null 2>&1
export SESSIONFLEET_TOKEN
SESSIONFLEET_TOKEN=$("$BIN" secrets token "$WORK/secrets.toml" bench --role admin 2>/dev/null)
"$BIN" hub --secrets "$WORK/secrets.toml" --data-dir "$WORK/hub" --http 127.0.0.1:25984 --grpc 127.0.0.1:26984 > "$WORK/hub.out" 2> "$WORK/hub.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ready' "$WORK/hub.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$WORK/hub.out" || { cat "$WORK/hub.err" >&2; exit 1; }

run() { "$BIN" bench --http 127.0.0.1:25984 --grpc 127.0.0.1:26984 --keys "$KEYS" --value-size "$VALUE" --json "$@"; }
run --workload http-get --connections 1 --duration-secs 1 --preload > /dev/null
run --workload http-get --connections "$CONNS" --duration-secs "$SECS" > "$WORK/http-get.json"
run --workload grpc-get --connections "$CONNS" --duration-secs "$SECS" > "$WORK/grpc-get.json"
run --workload http-put --connections "$CONNS" --duration-secs "$SECS" > "$WORK/http-put.json"

redis_run() { # $1: label, rest: redis-server args
  local label="$1"; shift
  redis-server --port 26379 --dir "$WORK" --save '' "$@" > /dev/null &
  local pid=$!
  for _ in $(seq 50); do redis-cli -p 26379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p 26379 -t set,get -d "$VALUE" -c "$CONNS" -r "$KEYS" -n 200000 --csv > "$WORK/redis-$label.csv"
  redis-cli -p 26379 shutdown nosave >/dev/null 2>&1 || kill "$pid"
  wait "$pid" 2>/dev/null || true
}
redis_run memory --appendonly no
redis_run fsync --appendonly yes --appendfsync always

python3 - "$WORK" "$CONNS" "$VALUE" "$(nproc)" <<'PY'
import csv, json, sys, pathlib, re, datetime
work, conns, value, cores = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
w = pathlib.Path(work)
ours = {k: json.loads((w / f"{k}.json").read_text()) for k in ["http-get", "grpc-get", "http-put"]}
def redis(label):
    rows = list(csv.DictReader((w / f"redis-{label}.csv").open()))
    return {r["test"]: r for r in rows}
rm, rf = redis("memory"), redis("fsync")
def rrow(r):
    return float(r["rps"]), float(r["p50_latency_ms"]) * 1000, float(r["p99_latency_ms"]) * 1000
lines = [
    f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on this {cores}-core machine: {conns} connections, "
    f"{value}-byte values, everything on 127.0.0.1, client and server sharing the cores. "
    "Release build; hub with `--durability sync` (every PUT fsynced, group-committed).",
    "",
    "| operation | ops/s | p50 µs | p99 µs | vs Redis |",
    "|---|---:|---:|---:|---|",
]
get_ops = rrow(rm["GET"])[0]
set_mem = rrow(rm["SET"])[0]
set_fsync = rrow(rf["SET"])[0]
def ours_row(name, label, base, base_name):
    r = ours[name]
    lines.append(f"| {label} | {r['ops_per_sec']:.0f} | {r['p50_us']} | {r['p99_us']} | {r['ops_per_sec']/base:.2f}× {base_name} |")
ours_row("http-get", "Sessionfleet HTTP GET", get_ops, "Redis GET")
ours_row("grpc-get", "Sessionfleet gRPC Get", get_ops, "Redis GET")
ours_row("http-put", "Sessionfleet HTTP PUT (durable)", set_fsync, "Redis SET fsync=always")
for label, row in [("Redis GET", rm["GET"]), ("Redis SET (no persistence)", rm["SET"]), ("Redis SET (appendfsync always)", rf["SET"])]:
    ops, p50, p99 = rrow(row)
    lines.append(f"| {label} | {ops:.0f} | {p50:.0f} | {p99:.0f} | baseline |")
errors = sum(r["errors"] for r in ours.values())
lines += ["", f"Errors during our runs: {errors}. Reproduce: `scripts/bench.sh {conns}`."]
table = "\n".join(lines)
md = pathlib.Path("BENCHMARKS.md")
text = md.read_text() if md.exists() else "# Benchmarks\n"
start, end = "<!-- server:start -->", "<!-- server:end -->"
block = f"{start}\n{table}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text += f"\n## Server: HTTP and gRPC beside Redis\n\n{block}\n"
md.write_text(text)
print(table)
PY
