#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints, per target, the
# executions, executions per second and crashes. See docs/fuzzing.md.
#
#   fuzz/run-all.sh            # 60 s per target
#   fuzz/run-all.sh 600        # ten minutes each
#   TARGETS="elf ring_back" fuzz/run-all.sh 30
#
# It installs what it needs: the nightly toolchain (libFuzzer's instrumentation is
# nightly-only), the guest's target for it (hv's build script builds the guest kernel
# with the same toolchain), and cargo-fuzz. Each target starts from its committed
# corpus (fuzz/corpus/<target>/, read only) and grows a scratch corpus in
# fuzz/work/<target>/ (not committed); a crash stops that target and leaves its input
# in fuzz/artifacts/<target>/. The exit status is 1 if any target crashed.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
FUZZ_DIR="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$FUZZ_DIR")"
cd "$ROOT"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! rustup target list --installed --toolchain nightly | grep -q '^x86_64-unknown-none$'; then
    rustup target add x86_64-unknown-none --toolchain nightly
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

ALL_TARGETS="$(cd "$FUZZ_DIR/fuzz_targets" && ls -- *.rs | sed 's/\.rs$//')"
TARGETS="${TARGETS:-$ALL_TARGETS}"

echo "building the fuzz targets (nightly, libFuzzer + AddressSanitizer)..."
cargo +nightly fuzz build

LOG_DIR="$FUZZ_DIR/last-run"
mkdir -p "$LOG_DIR"
REPORT="$LOG_DIR/report.txt"
printf '%-18s %14s %10s %8s\n' target executions execs/s crashes > "$REPORT"
failed=0
for target in $TARGETS; do
    work="$FUZZ_DIR/work/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    mkdir -p "$work" "$artifacts"
    find "$artifacts" -type f | sort > "$LOG_DIR/$target.before"
    echo "fuzzing $target for ${SECONDS_PER_TARGET}s..."
    log="$LOG_DIR/$target.log"
    # -timeout: an input that takes over 10 s is reported as a hang (a crash here).
    # -len_control=0: inputs may be as long as the largest seed (at least 4 KiB) from
    # the start; most targets read a list of steps, and in a run of a minute libFuzzer's
    # default slow growth of the length would keep them to a handful of steps.
    set +e
    cargo +nightly fuzz run "$target" "$work" "$FUZZ_DIR/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -len_control=0 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" > "$log" 2>&1
    status=$?
    set -e
    execs="$(grep -m1 '^stat::number_of_executed_units:' "$log" | awk '{print $2}')"
    rate="$(grep -m1 '^stat::average_exec_per_sec:' "$log" | awk '{print $2}')"
    find "$artifacts" -type f | sort | comm -13 "$LOG_DIR/$target.before" - > "$LOG_DIR/$target.new"
    crashes="$(wc -l < "$LOG_DIR/$target.new")"
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        # libFuzzer failed without saving an input (a build or start-up error).
        crashes="?"
        echo "  $target exited with status $status; see $log"
    fi
    printf '%-18s %14s %10s %8s\n' "$target" "${execs:-?}" "${rate:-?}" "$crashes" >> "$REPORT"
    if [ "$crashes" != 0 ]; then
        failed=1
        sed 's/^/  new artifact: /' "$LOG_DIR/$target.new"
    fi
done
echo
cat "$REPORT"
echo "(logs in $LOG_DIR)"
exit "$failed"
