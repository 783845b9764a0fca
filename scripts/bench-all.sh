#!/usr/bin/env bash
# Every hot path beside its ceiling, in one run on this machine and with the same load
# generator: HTTP GET of a 1 KB session (the hub vs a bare hyper server, and vs Redis
# GET), gRPC Sessions.Get with CONNECTIONS connections × 1 stream and with 2
# connections × 25 streams, as edge-clients multiplex (the hub vs a bare tonic server),
# and a durable PUT (the hub with --durability sync vs Redis SET with appendfsync
# always and everysec). The ceilings are `sessionfleet bench-ceiling`; `wrk` and
# `h2load` drive the same paths as well when their Debian packages install. Servers are
# pinned to core 0, load generators to core 1; ROUNDS interleaved rounds, each run
# SECONDS long; per run ops/s, p50/p99 and the server's CPU time per operation. Writes
# a Markdown table to bench-results/all.md (raw numbers to bench-results/all.json).
#
#   scripts/bench-all.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
SECS="${2:-5}"
CONNS="${3:-50}"
VALUE=1024
KEYS=10000
# What edge-clients do: few connections, many concurrent calls on each.
FEW_CONNS=2
STREAMS=25
OUT_DIR=bench-results

HUB_HTTP=127.0.0.1:27984
HUB_GRPC=127.0.0.1:27985
CEIL_HTTP=127.0.0.1:27986
CEIL_GRPC=127.0.0.1:27987
REDIS_MEM=27379
REDIS_EVERYSEC=27380
REDIS_ALWAYS=27381

# One core for the servers, the other for the load generators, so neither steals
# the other's CPU; on a single core both share it (and the header says so).
if [ "$(nproc)" -ge 2 ]; then SERVER_CORE=0 CLIENT_CORE=1; else SERVER_CORE=0 CLIENT_CORE=0; fi

# Installs Debian packages quietly, without letting their scripts start daemons.
install_pkg() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
  local made_policy= rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  { timeout 600 apt-get install -y -qq "$@" ||
    { timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq "$@"; }; } >/dev/null 2>&1 || rc=1
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  return "$rc"
}
{ command -v redis-server && command -v redis-benchmark && command -v redis-cli; } >/dev/null ||
  install_pkg redis-server redis-tools || true
{ command -v redis-server && command -v redis-benchmark && command -v redis-cli; } >/dev/null ||
  { echo "redis-server and redis-tools are needed: apt-get install redis-server redis-tools" >&2; exit 1; }
command -v wrk >/dev/null || install_pkg wrk || echo "wrk unavailable: its rows are left out" >&2
command -v h2load >/dev/null || install_pkg nghttp2-client || echo "h2load unavailable: its rows are left out" >&2
HAVE_WRK=$(command -v wrk >/dev/null && echo 1 || echo 0)
HAVE_H2LOAD=$(command -v h2load >/dev/null && echo 1 || echo 0)

cargo build --release --workspace --bins
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/sessionfleet"

# On a disk, not a tmpfs: the durable rows measure fsync.
WORK="$(mktemp -d "${BENCH_WORK_DIR:-/var/tmp}/bench-all.XXXXXX")"
mkdir -p "$WORK/r"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server's CPU time so far, in clock ticks: utime + stime of all its threads.
ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "server $1 has exited" >&2; return 1; }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}

wait_ready() { # name: the hub's and the ceiling's "ready" line on stdout
  for _ in $(seq 100); do grep -q '^ready' "$WORK/$1.out" 2>/dev/null && return; sleep 0.1; done
  echo "$1 did not start:" >&2; cat "$WORK/$1.err" >&2; exit 1
}

"$BIN" secrets init "$WORK/secrets.toml" --iterations 1000 >/dev/null 2>&1
export SESSIONFLEET_TOKEN
SESSIONFLEET_TOKEN=$("$BIN" secrets token "$WORK/secrets.toml" bench --role admin 2>/dev/null)

taskset -c "$SERVER_CORE" "$BIN" hub --secrets "$WORK/secrets.toml" --data-dir "$WORK/hub" \
  --http "$HUB_HTTP" --grpc "$HUB_GRPC" --durability sync --shutdown-grace-secs 1 \
  > "$WORK/hub.out" 2> "$WORK/hub.err" &
HUB_PID=$!
PIDS+=("$HUB_PID")
taskset -c "$SERVER_CORE" "$BIN" bench-ceiling --http "$CEIL_HTTP" --grpc "$CEIL_GRPC" --value-size "$VALUE" \
  > "$WORK/ceiling.out" 2> "$WORK/ceiling.err" &
CEIL_PID=$!
PIDS+=("$CEIL_PID")

declare -A REDIS_PID
redis_start() { # label port args...
  local label="$1" port="$2"; shift 2
  mkdir -p "$WORK/redis-$label"
  # No RDB snapshots and no AOF rewrites: their forked children would work beside the runs.
  taskset -c "$SERVER_CORE" redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/redis-$label" \
    --save '' --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$WORK/redis-$label.log" "$@" &
  REDIS_PID[$label]=$!
  PIDS+=("$!")
}
redis_start mem "$REDIS_MEM" --appendonly no
redis_start everysec "$REDIS_EVERYSEC" --appendonly yes --appendfsync everysec
redis_start always "$REDIS_ALWAYS" --appendonly yes --appendfsync always
wait_ready hub
wait_ready ceiling
for port in "$REDIS_MEM" "$REDIS_EVERYSEC" "$REDIS_ALWAYS"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" ping >/dev/null || { echo "redis on $port did not start" >&2; exit 1; }
done

bench() { # the project's load generator, on the client core
  timeout $((SECS + 120)) taskset -c "$CLIENT_CORE" "$BIN" bench --keys "$KEYS" --value-size "$VALUE" --json "$@"
}
echo "preloading $KEYS sessions into the hub; warming up" >&2
bench --http "$HUB_HTTP" --grpc "$HUB_GRPC" --workload http-get --connections 1 --duration-secs 1 --preload > /dev/null
bench --http "$CEIL_HTTP" --grpc "$CEIL_GRPC" --workload http-get --connections 1 --duration-secs 1 > /dev/null
# The keys redis-benchmark -r reads, each with a 1 KB value.
python3 - "$KEYS" "$VALUE" > "$WORK/redis-preload.resp" <<'PY'
import sys
keys, value = int(sys.argv[1]), "x" * int(sys.argv[2])
out = sys.stdout
for i in range(keys):
    k = f"key:{i:012d}"
    out.write(f"*3\r\n$3\r\nSET\r\n${len(k)}\r\n{k}\r\n${len(value)}\r\n{value}\r\n")
PY
timeout 120 redis-cli -p "$REDIS_MEM" --pipe < "$WORK/redis-preload.resp" > /dev/null

# Runs one measurement: NAME for the files, PID of the server whose CPU is counted,
# then the command; its output goes to r/NAME.out, CPU ticks to r/NAME.cpu. A failed or
# timed-out run is reported and leaves its row empty rather than ending the script.
measure() {
  local name="$1" pid="$2" t0; shift 2
  t0=$(ticks "$pid")
  if ! "$@" > "$WORK/r/$name.out" 2> "$WORK/r/$name.err"; then
    echo "run $name failed: $(tail -n 3 "$WORK/r/$name.err")" >&2
  fi
  echo "$t0 $(ticks "$pid")" > "$WORK/r/$name.cpu"
}

# redis-benchmark counts requests, not seconds: size each test to SECONDS from a
# first, shorter run of it (which also warms the server up).
declare -A REDIS_N
redis_bench() { # port test requests
  timeout $((SECS * 4 + 120)) taskset -c "$CLIENT_CORE" redis-benchmark -h 127.0.0.1 -p "$1" -t "$2" -d "$VALUE" \
    -c "$CONNS" -r "$KEYS" -n "$3" --threads 1 --csv
}
for spec in "mem:$REDIS_MEM:get" "everysec:$REDIS_EVERYSEC:set" "always:$REDIS_ALWAYS:set"; do
  IFS=: read -r label port test <<< "$spec"
  rps=$(redis_bench "$port" "$test" 5000 | python3 -c 'import csv,sys; print(float(next(csv.DictReader(sys.stdin))["rps"]))')
  REDIS_N[$label]=$(python3 -c "print(max(1000, int($rps * $SECS)))")
done

cat > "$WORK/wrk.lua" <<EOF
-- A random pre-loaded session per request, as the project's load generator does.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/bench/session-%08d", math.random(0, $((KEYS - 1)))))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('JSON {"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,"status_errors":%.0f,"errors":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
EOF
wrk_run() { # base URL
  timeout $((SECS + 60)) taskset -c "$CLIENT_CORE" wrk -t1 -c "$CONNS" -d "${SECS}s" --timeout 10s \
    -s "$WORK/wrk.lua" -H "authorization: Bearer $SESSIONFLEET_TOKEN" "$1"
}

# h2load sends gRPC when given its headers and a length-prefixed protobuf body: one
# fixed GetRequest (h2load cannot vary the body), POSTed to the method's path.
python3 - > "$WORK/get.grpc" <<'PY'
import sys
def field(n, s):
    b = s.encode()
    return bytes([n << 3 | 2, len(b)]) + b
msg = field(1, "bench") + field(2, "session-00000042")
sys.stdout.buffer.write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
PY
h2load_run() { # host:port connections streams
  timeout $((SECS + 60)) taskset -c "$CLIENT_CORE" h2load -t1 -c "$2" -m "$3" -D "$SECS" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $SESSIONFLEET_TOKEN" \
    -d "$WORK/get.grpc" "http://$1/sessionfleet.v1.Sessions/Get"
}
# h2load counts any HTTP 200 as success, and gRPC answers errors with 200 too: check
# once that both servers answer this request without a gRPC error before trusting its
# counts. h2load -v shows response headers but not trailers, so a success shows no
# grpc-status at all, and an error (sent trailers-only) shows its non-zero status.
if [ "$HAVE_H2LOAD" = 1 ]; then
  for target in "$HUB_GRPC" "$CEIL_GRPC"; do
    timeout 30 h2load -v -n 1 -c 1 -H 'content-type: application/grpc' -H 'te: trailers' \
      -H "authorization: Bearer $SESSIONFLEET_TOKEN" -d "$WORK/get.grpc" \
      "http://$target/sessionfleet.v1.Sessions/Get" > "$WORK/h2load-check.out" 2>&1 || true
    if ! grep -q ':status: 200' "$WORK/h2load-check.out" || grep -q 'grpc-status: [1-9]' "$WORK/h2load-check.out"; then
      echo "h2load's gRPC request fails at $target: its rows are left out" >&2
      HAVE_H2LOAD=0
    fi
  done
fi

hub_lg() { bench --http "$HUB_HTTP" --grpc "$HUB_GRPC" --duration-secs "$SECS" "$@"; }
ceil_lg() { bench --http "$CEIL_HTTP" --grpc "$CEIL_GRPC" --duration-secs "$SECS" "$@"; }
# A pair of runs, ours and its ceiling, in alternating order from round to round so
# neither always runs on the warmer (or more fragmented) machine.
pair() { # round, then two "name pid command..." groups separated by --
  local round="$1"; shift
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  if [ $((round % 2)) = 1 ]; then measure "${a[@]}"; measure "${b[@]}"; else measure "${b[@]}"; measure "${a[@]}"; fi
}

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  pair "$round" "hub_http-get_lg_$round" "$HUB_PID" hub_lg --workload http-get --connections "$CONNS" -- \
    "ceiling_http-get_lg_$round" "$CEIL_PID" ceil_lg --workload http-get --connections "$CONNS"
  measure "redis-mem_get_rb_$round" "${REDIS_PID[mem]}" redis_bench "$REDIS_MEM" get "${REDIS_N[mem]}"
  if [ "$HAVE_WRK" = 1 ]; then
    pair "$round" "hub_http-get_wrk_$round" "$HUB_PID" wrk_run "http://$HUB_HTTP" -- \
      "ceiling_http-get_wrk_$round" "$CEIL_PID" wrk_run "http://$CEIL_HTTP"
  fi
  pair "$round" "hub_grpc-conns_lg_$round" "$HUB_PID" hub_lg --workload grpc-get --connections "$CONNS" -- \
    "ceiling_grpc-conns_lg_$round" "$CEIL_PID" ceil_lg --workload grpc-get --connections "$CONNS"
  pair "$round" "hub_grpc-streams_lg_$round" "$HUB_PID" \
    hub_lg --workload grpc-get --connections "$FEW_CONNS" --streams "$STREAMS" -- \
    "ceiling_grpc-streams_lg_$round" "$CEIL_PID" \
    ceil_lg --workload grpc-get --connections "$FEW_CONNS" --streams "$STREAMS"
  if [ "$HAVE_H2LOAD" = 1 ]; then
    pair "$round" "hub_grpc-conns_h2load_$round" "$HUB_PID" h2load_run "$HUB_GRPC" "$CONNS" 1 -- \
      "ceiling_grpc-conns_h2load_$round" "$CEIL_PID" h2load_run "$CEIL_GRPC" "$CONNS" 1
    pair "$round" "hub_grpc-streams_h2load_$round" "$HUB_PID" h2load_run "$HUB_GRPC" "$FEW_CONNS" "$STREAMS" -- \
      "ceiling_grpc-streams_h2load_$round" "$CEIL_PID" h2load_run "$CEIL_GRPC" "$FEW_CONNS" "$STREAMS"
  fi
  measure "hub_put_lg_$round" "$HUB_PID" hub_lg --workload http-put --connections "$CONNS"
  measure "redis-always_put_rb_$round" "${REDIS_PID[always]}" redis_bench "$REDIS_ALWAYS" set "${REDIS_N[always]}"
  measure "redis-everysec_put_rb_$round" "${REDIS_PID[everysec]}" redis_bench "$REDIS_EVERYSEC" set "${REDIS_N[everysec]}"
done

mkdir -p "$OUT_DIR"
python3 - "$WORK/r" "$OUT_DIR" "$ROUNDS" "$SECS" "$CONNS" "$FEW_CONNS" "$STREAMS" "$(nproc)" "$(getconf CLK_TCK)" \
  "$SERVER_CORE" "$CLIENT_CORE" "$(findmnt -no FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK")" \
  "${REDIS_N[mem]}" "${REDIS_N[everysec]}" "${REDIS_N[always]}" <<'PY'
import csv, datetime, json, pathlib, re, statistics, sys

r_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rounds, secs, conns, few, streams, cores, clk = (int(x) for x in sys.argv[3:10])
server_core, client_core, fstype = sys.argv[10:13]
# Requests per redis-benchmark run, by configuration: it reports rates, not counts.
redis_n = dict(zip(["mem", "everysec", "always"], (int(x) for x in sys.argv[13:16])))


def parse(tool, text, name):
    """ops, ops/s, p50 µs, p99 µs, errors of one run's output (None when it failed)."""
    if tool == "lg":
        line = next((l for l in text.splitlines() if l.startswith("{")), None)
        if not line:
            return None
        j = json.loads(line)
        return dict(ops=j["ops"], ops_s=j["ops_per_sec"], p50=j["p50_us"], p99=j["p99_us"], errors=j["errors"],
                    seconds=j["seconds"])
    if tool == "wrk":
        line = next((l for l in text.splitlines() if l.startswith("JSON ")), None)
        if not line:
            return None
        j = json.loads(line[5:])
        ok = j["requests"] - j["status_errors"]
        return dict(ops=ok, ops_s=ok / (j["duration_us"] / 1e6), p50=j["p50_us"], p99=j["p99_us"],
                    errors=j["status_errors"] + j["errors"], seconds=j["duration_us"] / 1e6)
    if tool == "h2load":
        m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
        f = re.search(r"finished in ([\d.]+)(m?s)", text)
        if not m or not f:
            return None
        took = float(f.group(1)) / (1000 if f.group(2) == "ms" else 1)
        ok = int(m.group(3))
        # h2load gives min/max/mean/sd per request, no percentiles.
        return dict(ops=ok, ops_s=ok / took, p50=None, p99=None, errors=int(m.group(4)) + int(m.group(5)),
                    seconds=took)
    if tool == "rb":
        rows = list(csv.DictReader(text.splitlines()))
        if not rows:
            return None
        r = rows[0]
        label = name.split("_")[0].removeprefix("redis-")
        n, rps = redis_n[label], float(r["rps"])
        return dict(ops=n, ops_s=rps, p50=float(r["p50_latency_ms"]) * 1000,
                    p99=float(r["p99_latency_ms"]) * 1000, errors=0, seconds=n / rps if rps else None)
    raise ValueError(tool)


runs = {}  # (system, path, tool) -> [result per round]
for out in sorted(r_dir.glob("*.out")):
    system, path, tool, _round = out.stem.split("_")
    res = parse(tool, out.read_text(errors="replace"), out.stem)
    cpu = out.with_suffix(".cpu")
    if res is not None and cpu.exists() and res["ops"] > 0:
        t0, t1 = (int(x) for x in cpu.read_text().split())
        res["cpu_us"] = (t1 - t0) * 1e6 / clk / res["ops"]
        # Below ~100% the server had CPU to spare: the load generator, not it, set the pace.
        if res.get("seconds"):
            res["busy"] = (t1 - t0) / clk / res["seconds"] * 100
    runs.setdefault((system, path, tool), [])
    if res is not None:
        runs[(system, path, tool)].append(res)


def values(key, field):
    return [r[field] for r in runs.get(key, []) if r.get(field) is not None]


def med(key, field):
    v = values(key, field)
    return statistics.median(v) if v else None


def span(key, field="ops_s"):
    v = values(key, field)
    if not v:
        return "n/a"
    return f"{statistics.median(v):.0f} ({min(v):.0f}–{max(v):.0f})"


def num(x, fmt="{:.0f}"):
    return "—" if x is None else fmt.format(x)


shape_c, shape_s = f"{conns} conns × 1 stream", f"{few} conns × {streams} streams"
rows = [  # path, goal (ratio or None), goal text, ours, peer, peer name
    (f"HTTP GET 1 KB session, {conns} conns (loadgen)", 0.8, "≥ 0.8× bare hyper",
     ("hub", "http-get", "lg"), ("ceiling", "http-get", "lg")),
    (f"HTTP GET 1 KB session, {conns} conns (wrk)", 0.8, "≥ 0.8× bare hyper",
     ("hub", "http-get", "wrk"), ("ceiling", "http-get", "wrk")),
    (f"HTTP GET 1 KB session vs Redis GET, {conns} conns", 1.0, "≥ 1.0× Redis GET",
     ("hub", "http-get", "lg"), ("redis-mem", "get", "rb")),
    (f"gRPC Sessions.Get, {shape_c} (loadgen)", 0.9, "≥ 0.9× bare tonic",
     ("hub", "grpc-conns", "lg"), ("ceiling", "grpc-conns", "lg")),
    (f"gRPC Sessions.Get, {shape_s} (loadgen)", 0.9, "≥ 0.9× bare tonic",
     ("hub", "grpc-streams", "lg"), ("ceiling", "grpc-streams", "lg")),
    (f"gRPC Sessions.Get, {shape_c} (h2load)", 0.9, "≥ 0.9× bare tonic",
     ("hub", "grpc-conns", "h2load"), ("ceiling", "grpc-conns", "h2load")),
    (f"gRPC Sessions.Get, {shape_s} (h2load)", 0.9, "≥ 0.9× bare tonic",
     ("hub", "grpc-streams", "h2load"), ("ceiling", "grpc-streams", "h2load")),
    (f"durable PUT 1 KB vs Redis SET appendfsync always, {conns} conns", 1.2, "≥ 1.2× Redis always",
     ("hub", "put", "lg"), ("redis-always", "put", "rb")),
    (f"durable PUT 1 KB vs Redis SET appendfsync everysec, {conns} conns", None, "(shown)",
     ("hub", "put", "lg"), ("redis-everysec", "put", "rb")),
]
now = datetime.datetime.now(datetime.timezone.utc)
pinning = (f"servers on core {server_core}, load generators on core {client_core}"
           if server_core != client_core else f"one core: servers and load generators share core {server_core}")
lines = [
    f"Run {now:%Y-%m-%d %H:%M} UTC, {cores} cores, {rounds} interleaved rounds of {secs} s runs, "
    f"{conns} connections, {pinning} (taskset), everything on 127.0.0.1; release build; hub with "
    f"`--durability sync`, {fstype} disk for hub and Redis. ops/s as median (min–max) over rounds; "
    f"ratio of medians. Reproduce: `scripts/bench-all.sh {rounds} {secs} {conns}`.",
    "",
    "| path | goal | ours (median, min–max) | ceiling/peer (median, min–max) | ratio | server CPU µs/op ours / ceiling |",
    "|---|---|---:|---:|---:|---:|",
]
for label, goal, goal_text, ours, peer in rows:
    if not runs.get(ours) and not runs.get(peer) and (ours[2] in ("wrk", "h2load")):
        continue  # the tool was unavailable
    a, b = med(ours, "ops_s"), med(peer, "ops_s")
    ratio = None if a is None or not b else a / b
    verdict = "" if ratio is None or goal is None else (" ✓" if ratio >= goal else " ✗")
    cpu = f"{num(med(ours, 'cpu_us'), '{:.1f}')} / {num(med(peer, 'cpu_us'), '{:.1f}')}"
    lines.append(f"| {label} | {goal_text} | {span(ours)} | {span(peer)} | {num(ratio, '{:.2f}×')}{verdict} | {cpu} |")

names = {"hub": "hub", "ceiling": "ceiling (bench-ceiling)", "redis-mem": "Redis, no persistence",
         "redis-everysec": "Redis, appendfsync everysec", "redis-always": "Redis, appendfsync always"}
paths = {"http-get": "HTTP GET", "grpc-conns": f"gRPC Get, {shape_c}", "grpc-streams": f"gRPC Get, {shape_s}",
         "put": "durable PUT / SET", "get": "GET"}
tools = {"lg": "sessionfleet bench", "wrk": "wrk", "h2load": "h2load", "rb": "redis-benchmark --threads 1"}
lines += [
    "",
    "Every run (medians over rounds; h2load reports no percentiles). Server core busy is its CPU time over "
    "the run's wall time: well below 100% means the load generator, not the server, set the pace.",
    "",
    "| server | path | load generator | ops/s (median, min–max) | p50 µs | p99 µs | server CPU µs/op "
    "| server core busy | errors |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|",
]
for key in sorted(runs):
    system, path, tool = key
    errors = sum(values(key, "errors"))
    lines.append(
        f"| {names[system]} | {paths[path]} | {tools[tool]} | {span(key)} ({len(runs[key])}/{rounds} runs) | "
        f"{num(med(key, 'p50'))} | {num(med(key, 'p99'))} | {num(med(key, 'cpu_us'), '{:.1f}')} | "
        f"{num(med(key, 'busy'), '{:.0f}%')} | {errors} |"
    )
table = "\n".join(lines) + "\n"
(out_dir / "all.md").write_text(table)
(out_dir / "all.json").write_text(json.dumps({"|".join(k): v for k, v in runs.items()}, indent=1) + "\n")
print(table)
PY
