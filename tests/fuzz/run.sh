#!/usr/bin/env bash
# Run libFuzzer harnesses built by `make fuzz-build`.
#   tests/fuzz/run.sh run   SECONDS BUILD_DIR NAME...   corpus grows in BUILD_DIR/corpus/NAME
#   tests/fuzz/run.sh smoke SECONDS BUILD_DIR NAME...   from the seeds, scratch corpus
# Seeds: tests/fuzz/corpus/NAME/ (read only), plus tests/fuzz/crashes/NAME-*.
# FUZZ_STRICT=1 in the environment: known issues fail too. A crash or broken invariant leaves
# BUILD_DIR/crashes/NAME-crash-* (reproduce: BUILD_DIR/NAME FILE) and fails the run.
# Prints one line per harness: runs, executions per second, coverage.
set -uo pipefail

mode=${1:?mode}; secs=${2:?seconds}; bdir=${3:?build dir}; shift 3
here=$(cd "$(dirname "$0")" && pwd)
failed=()

# Dictionaries and input sizes, per harness.
opts_for() {
  case $1 in
    fuzz_reply|fuzz_command|fuzz_ehlo|fuzz_data) echo "-dict=$here/smtp.dict" ;;
    fuzz_session) echo "-dict=$here/smtp.dict -max_len=8192" ;;
    fuzz_policy) echo "-dict=$here/policy.dict" ;;
    fuzz_pinjson) echo "-dict=$here/pinjson.dict" ;;
    fuzz_config) echo "-dict=$here/config.dict" ;;
  esac
}

printf '%-14s %6s %10s %8s %6s  %s\n' harness secs runs exec/s cov result
for name in "$@"; do
  bin=$bdir/$name
  seeds=$here/corpus/$name
  if [ "$mode" = smoke ]; then work=$bdir/smoke/$name; rm -rf "$work"; else work=$bdir/corpus/$name; fi
  mkdir -p "$work" "$bdir/crashes" "$bdir/logs"
  [ -d "$seeds" ] || seeds=
  # Reproducers of reported issues run as inputs too (tolerated unless FUZZ_STRICT=1).
  for f in "$here"/crashes/"$name"-*; do [ -f "$f" ] && cp "$f" "$work/"; done
  log=$bdir/logs/$name.log
  start=$(date +%s%N)
  # shellcheck disable=SC2046
  "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$bdir/crashes/$name-" $(opts_for "$name") \
    "$work" ${seeds:+"$seeds"} >"$log" 2>&1
  rc=$?
  end=$(date +%s%N)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  result=ok
  if [ $rc -ne 0 ]; then result="FAILED (exit $rc), log: $log"; failed+=("$name"); fi
  printf '%-14s %6.1f %10s %8s %6s  %s\n' "$name" "$(awk -v n=$((end - start)) 'BEGIN { print n / 1e9 }')" \
    "${runs:--}" "${eps:--}" "${cov:--}" "$result"
  if [ $rc -ne 0 ]; then
    # What broke and where, in our code; the whole report is in the log.
    grep -E "^==fuzz==|ERROR:|SUMMARY|Assertion|runtime error|#[0-9]+ .*(proxy|tests/fuzz)/|Test unit written" \
      "$log" | head -30 | sed 's/^/    /'
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
