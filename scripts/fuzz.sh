#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short time each (default 10s):
#   scripts/fuzz.sh 30s
# A target that finds a failing input fails the run; the input is saved
# under the package's testdata/fuzz/ as usual.
set -euo pipefail
fuzztime="${1:-10s}"
status=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    printf 'fuzz: %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
    if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg" >"$out" 2>&1; then
      tail -n 3 "$out"
    elif grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input' "$out"; then
      # The go command's deadline fell while a worker was minimizing a
      # new (passing) input: no failure was found.
      tail -n 6 "$out"
      echo "fuzz: $target: stopped at the deadline while minimizing; no failing input"
    else
      cat "$out"
      status=1
    fi
  done
done
exit $status
