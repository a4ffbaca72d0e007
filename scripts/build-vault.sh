#!/usr/bin/env bash
# Builds a HashiCorp Vault server from its module source on the Go module
# proxy into the cache folder (${XDG_CACHE_HOME:-~/.cache}/rootline/bin/vault),
# for the tests of hsm/vault and ca/vaultpki, which start `vault server -dev`
# on loopback. Skips when the binary is there with the right version stamp.
#
# Vault v1.21.1 compiles unmodified from its module zip once the replace
# directives that point at its own api/ and sdk/ folders (absent from the
# module zip) are dropped: the published api and sdk modules are used
# instead. v1.21.2 to v1.21.4 do not compile this way. It downloads about
# 3.6 GB of modules and compiles for 10 to 25 minutes on 2 cores with empty
# module and build caches (17 CPU-minutes), and takes about 25 s with both
# warm. The binary (~500 MB) is cached, never committed.
set -euo pipefail

version="${VAULT_VERSION:-v1.21.1}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/rootline"
tools="$cache/bin"
stamp="$tools/.vault.version"
mod="github.com/hashicorp/vault@$version"

say() { printf 'deps: %s\n' "$*"; }

built() { [ -x "$tools/vault" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; }
built && exit 0
mkdir -p "$tools"

# One build at a time: a second `make deps` waits for the first, then
# finds the binary built.
if command -v flock >/dev/null; then
  exec 9>"$tools/.vault.lock"
  flock 9
  built && exit 0
fi

say "building Vault $version from the Go module proxy (10 to 25 minutes the first time)"
start=$(date +%s)

# The module folder of the source (read-only in the module cache).
dir=$(GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -f "$dir/go.mod" ] || { say "go mod download $mod gave no source folder"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rootline-vault.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"

(
  cd "$work/src"
  for r in github.com/hashicorp/vault/api \
           github.com/hashicorp/vault/api/auth/approle \
           github.com/hashicorp/vault/api/auth/kubernetes \
           github.com/hashicorp/vault/api/auth/userpass \
           github.com/hashicorp/vault/sdk; do
    go mod edit -dropreplace="$r"
  done
  # The output path is outside the source: the source has a vault/ folder.
  GOWORK=off GOFLAGS= CGO_ENABLED=0 go build -mod=mod -trimpath -o "$work/vault" .
)

"$work/vault" version >/dev/null
mv -f "$work/vault" "$tools/vault"
echo "$mod" >"$stamp"
say "built Vault $version in $(( $(date +%s) - start )) s: $tools/vault"
