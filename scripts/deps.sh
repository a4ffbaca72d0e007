#!/usr/bin/env bash
# Installs what rootline's build, tests and demo need, and only what is
# missing: Debian packages with apt-get (as root, or through sudo), Go
# programs with `go install` at pinned versions into the cache folder
# (${XDG_CACHE_HOME:-~/.cache}/rootline/bin). Safe to run again.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/rootline"
tools="$cache/bin"
mkdir -p "$tools"

# Debian packages, as "command:package" (the command tells whether the
# package is already there).
debian=(
  "openssl:openssl"
  "softhsm2-util:softhsm2"
  "pkcs11-tool:opensc"
  "tpm2_eventlog:tpm2-tools"
  "swtpm:swtpm"
  "swtpm_setup:swtpm-tools"
  "pg_ctlcluster:postgresql"
)

# Go programs, as "command:module@version", optionally followed by
# environment settings for the build ("NAME=value", space-separated).
gotools=(
  "staticcheck:honnef.co/go/tools/cmd/staticcheck@v0.8.2"
  # step-ca and the step CLI, for the ca/stepca backend's tests. Pure Go
  # builds: no PKCS#11/YubiKey cgo plugins are needed here.
  "step-ca:github.com/smallstep/certificates/cmd/step-ca@v0.30.2 CGO_ENABLED=0"
  "step:github.com/smallstep/cli/cmd/step@v0.30.2 CGO_ENABLED=0"
)

say() { printf 'deps: %s\n' "$*"; }

command -v go >/dev/null || { say "Go is required (https://go.dev/dl); install it first"; exit 1; }

missing=()
for entry in "${debian[@]}"; do
  cmd=${entry%%:*} pkg=${entry#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "need root or sudo to install: ${missing[*]}"; exit 1; }
    sudo="sudo"
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for entry in "${gotools[@]}"; do
  read -r spec buildenv <<<"$entry"
  cmd=${spec%%:*} mod=${spec#*:}
  stamp="$tools/.$cmd.version"
  version="$mod${buildenv:+ $buildenv}" # what the stamp records
  if [ -x "$tools/$cmd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
    continue
  fi
  say "go install $mod${buildenv:+ ($buildenv)}"
  # shellcheck disable=SC2086 # buildenv is a list of NAME=value words
  env GOBIN="$tools" $buildenv go install "$mod"
  echo "$version" >"$stamp"
done

# A HashiCorp Vault server, for the tests of hsm/vault and ca/vaultpki: built
# from its module source (see build-vault.sh); skipped when already built.
"$(dirname "${BASH_SOURCE[0]}")/build-vault.sh"

go mod download
