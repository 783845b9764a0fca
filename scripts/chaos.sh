#!/usr/bin/env bash
# The fault-injection suite in long mode: every scenario of tests/chaos.rs with its fault phase
# lasting N minutes (kill loops use their long round counts), one scenario at a time, each
# scenario's figures appended as a JSON line to the report file.
#
#   scripts/chaos.sh [--minutes N] [--report FILE] [SCENARIO_FILTER]
#
# Short mode is what `cargo test` (and CI) runs: the same scenarios for seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=1
REPORT="chaos-report.jsonl"
FILTER=""
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --report) REPORT="$2"; shift 2 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) FILTER="$1"; shift ;;
  esac
done
: > "$REPORT"
CHAOS_MINUTES="$MINUTES" CHAOS_REPORT="$(realpath "$REPORT")" \
  cargo test --release --test chaos -- --test-threads 1 --nocapture $FILTER
echo "figures: $REPORT"
