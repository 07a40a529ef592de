#!/usr/bin/env bash
# Run cmocka unit test binaries; print one closing count line; exit non-zero on any failure.
set -u
pass=0; fail=0
for t in "$@"; do
  if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $t" >&2; fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
