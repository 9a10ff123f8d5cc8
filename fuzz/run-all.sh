#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other, and prints
# one summary line per target. Exits non-zero if any target found a crash
# (the reproducer is in fuzz/artifacts/<target>/).
#
#   fuzz/run-all.sh 60                       # a bounded run, e.g. for CI
#   nice -n 19 fuzz/run-all.sh 600           # the 10-minute run, politely
#   FUZZ_SANITIZER=none fuzz/run-all.sh 60   # no AddressSanitizer (faster build)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on the stable
# toolchain: RUSTC_BOOTSTRAP=1 unlocks the -Zsanitizer flag that
# AddressSanitizer needs (see fuzz/README.md).
#
# Seeds are read from fuzz/corpus/<target>/ (committed, left untouched);
# what libFuzzer discovers goes to fuzz/work/<target>/ (ignored by git),
# which later runs start from too.
set -euo pipefail

if [[ $# -ne 1 || ! $1 =~ ^[0-9]+$ || $1 -eq 0 ]]; then
    echo "usage: $0 SECONDS   (run each fuzz target for SECONDS)" >&2
    exit 2
fi
seconds=$1
cd "$(dirname "$0")"

sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
targets=(request_head response_head chunked)

# Build once up front, so the time limit is spent fuzzing, not compiling.
cargo fuzz build --sanitizer "$sanitizer"

status=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target"
    log="work/$target.log"
    # Heads may be up to 16 KiB (431 beyond); let inputs grow past that.
    max_len=20480
    [[ $target == chunked ]] && max_len=8192
    echo "== $target: ${seconds}s (log: fuzz/$log)"
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=1
        echo "   FAILED: see fuzz/$log and fuzz/artifacts/$target/"
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 | sed 's/^/   /' || true
    fi
    # The last status line has the coverage; the final stats the executions.
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, features \2, corpus \3/p' <<<"$last")
    echo "   executions ${execs:-?} (${rate:-?}/s), ${cov:-no coverage line}"
done
exit "$status"
