#!/usr/bin/env bash
# Every fuzz target (fuzz/fuzz_targets, cargo-fuzz + libFuzzer on nightly) for a time
# each, starting from the seeds kept in fuzz/seeds/<target> plus whatever earlier runs
# left in fuzz/corpus/<target>. Prints one line per target: executions, corpus size,
# findings. A crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
#
#   scripts/fuzz.sh [SECONDS_EACH] [TARGET...]     # default 60 s, every target
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is needed: cargo install cargo-fuzz" >&2; exit 1; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "the nightly toolchain is needed" >&2; exit 1; }
cd fuzz
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || mapfile -t TARGETS < <(cargo +nightly fuzz list)
cargo +nightly fuzz build
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  # -rss_limit_mb: the store target holds RocksDB; the default 2 GB is plenty but say so.
  if cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    result="no findings"
  else
    result="FINDING: see fuzz/artifacts/$t/"
    failed=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  printf '%-18s %4s s  %10s executions  %6s corpus files  %s\n' \
    "$t" "$SECS" "$execs" "$(find "corpus/$t" -type f | wc -l)" "$result"
  rm -f "$log"
done
exit "$failed"
