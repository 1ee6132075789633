#!/usr/bin/env bash
# Fuzzes CertHub's parsers with cargo fuzz (libFuzzer + AddressSanitizer):
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...]
# Targets (fuzz/fuzz_targets/): pkcs12 (PKCS#12, X.509, ICP-Brasil), file_name, envelope, config.
# Installs cargo-fuzz when missing and uses the nightly toolchain when there is one (installing
# it when rustup can); without it, the stable toolchain with RUSTC_BOOTSTRAP=1 (the sanitizer
# flags are nightly-only; the rest of the build is plain stable). CERTHUB_FUZZ_TOOLCHAIN=stable
# or =nightly forces one. Each target runs for SECONDS with bounded memory, input size and
# time per input, then a table of exec/s and coverage is printed. Exits non-zero when any
# target crashed, panicked, leaked, ran out of memory or timed out; the input that did it is in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pkcs12 file_name envelope config)

rss_limit_mb=1024
timeout_secs=10
max_len() {
  case "$1" in
    file_name) echo 1024 ;;
    *) echo 8192 ;; # the largest seed (a PFX sealed in a JSON payload) is about 7 KiB
  esac
}

step() { printf '\n=== %s\n' "$*"; }

step "fuzz: cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz --version

step "fuzz: toolchain"
choice="${CERTHUB_FUZZ_TOOLCHAIN:-}"
if [ -z "$choice" ]; then
  if rustup run nightly rustc --version >/dev/null 2>&1; then
    choice=nightly
  elif timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 \
    && rustup run nightly rustc --version >/dev/null 2>&1; then
    choice=nightly
  else
    echo "no nightly toolchain could be had; using stable with RUSTC_BOOTSTRAP=1"
    choice=stable
  fi
fi
case "$choice" in
  nightly)
    rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
    fuzz_cargo=(cargo +nightly)
    ;;
  stable)
    fuzz_cargo=(env RUSTC_BOOTSTRAP=1 cargo)
    ;;
  *)
    echo "CERTHUB_FUZZ_TOOLCHAIN must be nightly or stable, not $choice" >&2
    exit 2
    ;;
esac
"${fuzz_cargo[@]}" --version
rustc_of() { if [ "$choice" = nightly ]; then rustup run nightly rustc --version; else rustc --version; fi; }
rustc_of

step "fuzz: seeds from tests/fixtures (examples/fuzz_seeds.rs)"
rm -rf fuzz/seeds
cargo run --quiet --example fuzz_seeds -- fuzz/seeds

step "fuzz: build (release, debug assertions, AddressSanitizer)"
fuzz_flags=(--target-dir "$root/fuzz/target")
"${fuzz_cargo[@]}" fuzz build "${fuzz_flags[@]}"

logs="$root/fuzz/target/logs"
mkdir -p "$logs"
failed=()
rows=()
for target in "${targets[@]}"; do
  step "fuzz: $target for ${seconds} s"
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  dirs=("$corpus" "fuzz/seeds/$target")
  # Inputs that once crashed (fixed since; `cargo test` replays them too).
  [ -d "tests/fixtures/fuzz/$target" ] && dirs+=("tests/fixtures/fuzz/$target")
  log="$logs/$target.log"
  status=0
  "${fuzz_cargo[@]}" fuzz run "${fuzz_flags[@]}" "$target" "${dirs[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" -malloc_limit_mb="$rss_limit_mb" \
    -max_len="$(max_len "$target")" -timeout="$timeout_secs" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  tail -n 25 "$log"
  # libFuzzer's last status line: "#N DONE cov: C ft: F corp: K/Sb ..."
  last="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)"
  field() { sed -nE "s/.* $1: ([^ ]+).*/\\1/p" <<<"$last"; }
  execs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)"
  per_sec="$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)"
  rss="$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+).*/\1/p' "$log" | tail -n 1)"
  artifacts="$(find "fuzz/artifacts/$target" -type f | wc -l)"
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    echo "$target FAILED (exit $status); full log: $log" >&2
    find "fuzz/artifacts/$target" -type f | sed 's/^/  artifact: /' >&2
  fi
  rows+=("| $target | ${execs:-?} | ${per_sec:-?} | $(field cov) | $(field ft) | $(field corp) | ${rss:-?} | $([ "$status" -eq 0 ] && echo 0 || echo "FAILED ($artifacts file(s))") |")
done

step "fuzz: summary (${seconds} s per target, $(rustc_of | cut -d' ' -f1-2)$([ "$choice" = stable ] && echo ' + RUSTC_BOOTSTRAP=1'))"
echo "| target | execs | exec/s | cov (edges) | ft (features) | corpus (files/bytes) | peak RSS MB | crashes |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${failed[*]} failed; inputs in fuzz/artifacts/<target>/, logs in $logs" >&2
  exit 1
fi
