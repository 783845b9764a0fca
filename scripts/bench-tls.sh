#!/usr/bin/env bash
# What TLS costs, in one run on this machine: the same hub build serving plaintext and
# TLS side by side (two processes, same options, same keyspace), driven by the same load
# generator with the same connections: HTTP GET over keep-alive connections and gRPC Get,
# in interleaved rounds (medians, min-max); then a reconnect storm: STORM clients opening
# a connection (and a TLS handshake) at the same instant and each sending one GET — the
# time until every one is served. Writes the table into BENCHMARKS.md between the "tls"
# markers.
#
#   scripts/bench-tls.sh [CONNECTIONS] [SECONDS] [ROUNDS] [STORM]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-32}"
SECS="${2:-5}"
ROUNDS="${3:-3}"
STORM="${4:-200}"
VALUE=1024
KEYS=10000

cargo build --release --workspace --bins
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/sessionfleet"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Credentials and certificates, minted as an operator does.
"$BIN" secrets init "$WORK/secrets.toml" --iterations 1000 >/dev/null 2>&1
export SESSIONFLEET_TOKEN
SESSIONFLEET_TOKEN=$("$BIN" secrets token "$WORK/secrets.toml" bench --role admin 2>/dev/null)
cat > "$WORK/topology.toml" <<EOF
[fleet]
name = "bench-tls"
[hub]
name = "tls-hub"
http = "127.0.0.1:25995"
grpc = "127.0.0.1:26995"
[[datacentre]]
name = "unused"
  [[datacentre.spoke]]
  name = "unused-1"
  http = "127.0.0.1:25996"
  grpc = "127.0.0.1:26996"
[[database]]
name = "bench"
EOF
"$BIN" certs ca --out "$WORK/tls" >/dev/null
"$BIN" certs nodes --topology "$WORK/topology.toml" --ca-dir "$WORK/tls" --out "$WORK/tls" >/dev/null

start() { # name, args...
  local name="$1"; shift
  "$BIN" hub --secrets "$WORK/secrets.toml" --data-dir "$WORK/$name" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q '^ready' "$WORK/$name.out" 2>/dev/null && return; sleep 0.1; done
  cat "$WORK/$name.err" >&2; exit 1
}
start plain --http 127.0.0.1:25985 --grpc 127.0.0.1:26985
start tls --http 127.0.0.1:25995 --grpc 127.0.0.1:26995 \
  --tls-ca "$WORK/tls/ca.pem" --tls-cert "$WORK/tls/tls-hub.pem" --tls-key "$WORK/tls/tls-hub.key"

plain() { "$BIN" bench --http 127.0.0.1:25985 --grpc 127.0.0.1:26985 --keys "$KEYS" --value-size "$VALUE" --json "$@"; }
tls() { "$BIN" bench --http 127.0.0.1:25995 --grpc 127.0.0.1:26995 --keys "$KEYS" --value-size "$VALUE" --json --tls-ca "$WORK/tls/ca.pem" "$@"; }
plain --workload http-get --connections 1 --duration-secs 1 --preload > /dev/null
tls --workload http-get --connections 1 --duration-secs 1 --preload > /dev/null

for round in $(seq "$ROUNDS"); do
  for w in http-get grpc-get; do
    plain --workload "$w" --connections "$CONNS" --duration-secs "$SECS" > "$WORK/plain-$w-$round.json"
    tls --workload "$w" --connections "$CONNS" --duration-secs "$SECS" > "$WORK/tls-$w-$round.json"
  done
  plain --workload connect-storm --connections "$STORM" > "$WORK/plain-storm-$round.json"
  tls --workload connect-storm --connections "$STORM" > "$WORK/tls-storm-$round.json"
done

python3 - "$WORK" "$CONNS" "$ROUNDS" "$STORM" "$(nproc)" "$SECS" <<'PY'
import json, sys, pathlib, re, datetime, statistics
work, conns, rounds, storm, cores, secs = sys.argv[1:]
w = pathlib.Path(work)
def runs(kind, name):
    return [json.loads((w / f"{kind}-{name}-{r}.json").read_text()) for r in range(1, int(rounds) + 1)]
def med(xs):
    return statistics.median(xs)
def span(xs, fmt="{:.0f}"):
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"
lines = [
    f"Run {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on this {cores}-core machine, everything on 127.0.0.1, "
    f"client and servers sharing the cores; release build; two hubs of the same build side by side, one plaintext, "
    f"one TLS 1.3 (rustls, ring; certificates from `sessionfleet certs`), bearer-token authentication on both. "
    f"{conns} keep-alive connections, {secs} s per run, {rounds} interleaved rounds: median (min–max).",
    "",
    "| operation | plaintext ops/s | TLS ops/s | TLS / plaintext | plaintext p99 µs | TLS p99 µs |",
    "|---|---:|---:|---:|---:|---:|",
]
errors = 0
for name, label in [("http-get", "HTTP GET, 1 KB session"), ("grpc-get", "gRPC Sessions.Get, 1 KB")]:
    p, t = runs("plain", name), runs("tls", name)
    errors += sum(r["errors"] for r in p + t)
    po, to = [r["ops_per_sec"] for r in p], [r["ops_per_sec"] for r in t]
    lines.append(
        f"| {label} | {span(po)} | {span(to)} | {med(to)/med(po):.2f}× | "
        f"{med([r['p99_us'] for r in p]):.0f} | {med([r['p99_us'] for r in t]):.0f} |"
    )
p, t = runs("plain", "storm"), runs("tls", "storm")
lines += [
    "",
    f"Reconnect storm: {storm} clients open a connection at the same instant (TCP, plus the TLS handshake) and "
    "send one GET each; time from the common start until the client is answered.",
    "",
    "| | all served after, ms | p50 ms | p99 ms | failed |",
    "|---|---:|---:|---:|---:|",
]
for label, rs in [("plaintext", p), ("TLS", t)]:
    lines.append(
        f"| {label} | {span([r['max_us'] / 1000 for r in rs], '{:.1f}')} | "
        f"{med([r['p50_us'] / 1000 for r in rs]):.1f} | {med([r['p99_us'] / 1000 for r in rs]):.1f} | "
        f"{sum(r['errors'] for r in rs)} |"
    )
lines += ["", f"Errors during the throughput runs: {errors}. Reproduce: `scripts/bench-tls.sh {conns} {secs} {rounds} {storm}`."]
table = "\n".join(lines)
md = pathlib.Path("BENCHMARKS.md")
text = md.read_text() if md.exists() else "# Benchmarks\n"
start, end = "<!-- tls:start -->", "<!-- tls:end -->"
block = f"{start}\n{table}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    marker = "## Replication:"
    section = f"## TLS: what encryption costs (`scripts/bench-tls.sh`)\n\n{block}\n\n"
    text = text.replace(marker, section + marker, 1) if marker in text else text + "\n" + section
md.write_text(text)
print(table)
PY
