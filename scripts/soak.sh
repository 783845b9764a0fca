#!/usr/bin/env bash
# The soak in long mode: tests/soak.rs for N minutes (release build), its figures (each
# node's memory, descriptor, thread and task counts and slopes) appended as a JSON line
# to the report file.
#
#   scripts/soak.sh [--minutes N] [--report FILE]      # default 30 minutes
#
# Short mode is what `cargo test` (and CI) runs: the same soak for 40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=30
REPORT="soak-report.jsonl"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --report) REPORT="$2"; shift 2 ;;
    -h|--help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
SOAK_MINUTES="$MINUTES" SOAK_REPORT="$(realpath -m "$REPORT")" \
  cargo test --release --test soak -- --nocapture
echo "figures: $REPORT"
