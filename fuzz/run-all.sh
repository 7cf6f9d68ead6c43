#!/usr/bin/env bash
# Runs every fuzz target one after another (never in parallel: the machine
# is shared), each for SECONDS (default 60), and prints one summary line per
# target. Exits non-zero if any target found a crash; the input is written
# to fuzz/artifacts/<target>/ and the full log to
# fuzz/artifacts/<target>/last-run.log.
#
#   fuzz/run-all.sh [SECONDS] [extra libFuzzer flags...]
#
# Environment:
#   FUZZ_SANITIZER=none|address   default none (the crate forbids unsafe
#                                 code; ASan works too, ~2-4x slower)
#   FUZZ_SKIP_KNOWN_BUGS=1        steer around the reported bugs listed in
#                                 docs/fuzzing.md, to explore past them
#   FUZZ_TARGETS="info config"    a subset, in this order
#
# cargo-fuzz passes nightly-only flags (-Z...) to rustc; RUSTC_BOOTSTRAP=1
# lets the stable toolchain accept them. See docs/fuzzing.md.
set -euo pipefail

secs="${1:-60}"
shift || true
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [libFuzzer flags...]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a targets <<<"${FUZZ_TARGETS:-info cluster_nodes cluster_info cluster_shards config target_url resp}"
# -a: debug assertions, so integer overflow panics instead of wrapping.
build_flags=(-O -a --sanitizer "$sanitizer")

cargo fuzz build "${build_flags[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    extra=()
    # Addresses are short; let the fuzzer grow them past the tiny seeds.
    [ "$t" = target_url ] && extra+=(-max_len=512)
    [ -f "dict/$t.dict" ] && extra+=(-dict="dict/$t.dict")
    echo "== $t: ${secs}s" >&2
    set +e
    cargo fuzz run "${build_flags[@]}" "$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${extra[@]}" "$@" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc): $(grep -m1 -E 'panicked at|ERROR: ' "$log" || true)"
        failed+=("$t")
    fi
    summary+=("$(printf '%-15s runs=%-9s exec/s=%-6s %-22s %s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-cov: ?}" "$result")")
done

# The config target's per-process scratch file (see fuzz_targets/config.rs).
rm -f "${TMPDIR:-/tmp}"/redis-vitals-fuzz-*.toml

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
