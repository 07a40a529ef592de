#!/usr/bin/env bash
# Run every integration test script against one starttlsd binary; print one
# closing count line; exit non-zero on any failure.
#   tests/run-integration.sh BINARY [SCRIPT...]
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "$1"); shift
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=("$top"/tests/integration/[0-9]*.sh)
results=$(mktemp)
export STARTTLSD=$bin T_RESULTS=$results
# Sanitizer builds: any report fails the run (proxy_stop greps for them).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
failed_scripts=()
for t in "${scripts[@]}"; do
	echo "== $(basename "$t") ($(basename "$(dirname "$bin")")/$(basename "$bin"))"
	before=$(wc -l <"$results")
	if ! bash "$t"; then
		failed_scripts+=("$(basename "$t")")
		# A script that died before finish() still counts as a failure.
		[ "$(wc -l <"$results")" -gt "$before" ] || echo "0 1" >>"$results"
	fi
done
read -r pass fail skipped < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$results")
rm -f "$results"
[ ${#failed_scripts[@]} -gt 0 ] && echo "failed: ${failed_scripts[*]}"
echo "integration: $pass passed, $fail failed, $skipped skipped"
[ "$fail" -eq 0 ] && [ ${#failed_scripts[@]} -eq 0 ]
