#!/usr/bin/env bash
# Runs each fuzz target for a bounded time with cargo-fuzz (libFuzzer), from
# the committed seeds. Outside the test suite: it needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [TARGET...]   (default: 60 s each;
#                                                     config ledger tar)
#
# A crash (a panic, or a failed check of fuzz/harness.rs) is copied to
# fuzz/regressions/<target>/, where `cargo test` replays it on every CI run:
# fix the bug, commit the input. Exits 1 when a target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
jobs=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(config ledger tar)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 2
fi

# The seeds each target starts from (as fuzz/harness.rs lists them).
seeds() {
  case "$1" in
    config) echo fuzz/seeds/config deploy ;;
    ledger) echo fuzz/seeds/ledger ;;
    tar) echo fixtures/tar fuzz/seeds/tar ;;
    *) echo "fuzz.sh: no target $1 (config, ledger, tar)" >&2; exit 2 ;;
  esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crashed=()
for t in "${targets[@]}"; do
  read -r -a dirs <<<"$(seeds "$t")"
  mkdir -p "$work/corpus-$t" "$work/artifacts-$t"
  echo "==> fuzz $t for ${seconds}s (seeds: ${dirs[*]})"
  # New corpus entries go to the temp dir; the seeds are only read.
  parallel=()
  # With -jobs, libFuzzer writes each worker's log to ./fuzz-N.log.
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  set +e
  cargo +nightly fuzz run "$t" "$work/corpus-$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=262144 \
    "${parallel[@]}" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts-$t/" 2>&1 | tee "$work/log-$t" | grep -E "^#[0-9]+.*(pulse|DONE)|Done|stat::|ERROR|panicked|SUMMARY|artifact"
  status=${PIPESTATUS[0]}
  set -e
  found=$(find "$work/artifacts-$t" -type f | wc -l)
  if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    mkdir -p "fuzz/regressions/$t"
    find "$work/artifacts-$t" -type f -exec cp {} "fuzz/regressions/$t/" \;
    echo "!! $t: crashed (exit $status); $found input(s) copied to fuzz/regressions/$t/"
    grep -m1 -A5 -E "panicked|ERROR" "$work/log-$t" || true
    crashed+=("$t")
  else
    echo "==> $t: no crash in ${seconds}s; corpus $(find "$work/corpus-$t" -type f | wc -l) inputs"
  fi
done
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in ${crashed[*]}: replay with cargo test -p restore-verifier --test e2e fuzz::" >&2
  exit 1
fi
