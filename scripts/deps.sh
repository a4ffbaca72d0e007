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
)

# Go programs, as "command:module@version".
gotools=(
  "staticcheck:honnef.co/go/tools/cmd/staticcheck@v0.8.2"
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
  cmd=${entry%%:*} mod=${entry#*:}
  stamp="$tools/.$cmd.version"
  if [ -x "$tools/$cmd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
    continue
  fi
  say "go install $mod"
  GOBIN="$tools" go install "$mod"
  echo "$mod" >"$stamp"
done

go mod download
