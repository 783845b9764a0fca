#!/usr/bin/env bash
# The revocation figures of BENCHMARKS.md: one hub, REVOKE_SPOKES spokes (default 25), a
# REVOKE_BACKLOG-change backlog (default 100,000) written just before and 2,000 writes/s
# during REVOKE_COUNT revocations (default 50), each timed until every spoke acknowledged it.
# Release build; prints one REVOKE-FIGURES JSON line.
#
#   scripts/bench-revocation.sh            # REVOKE_SPOKES=5 REVOKE_BACKLOG=10000 for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace --test revocation -- --ignored --nocapture revocation_figures 2>&1 \
  | grep -E "REVOKE-FIGURES|test result|panicked"
