#!/usr/bin/env bash
# Runs every Fuzz target in the module for a short time each (default 10s):
#   scripts/fuzz.sh 30s
set -euo pipefail
fuzztime="${1:-10s}"
status=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    printf 'fuzz: %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
    if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg"; then
      status=1
    fi
  done
done
exit $status
