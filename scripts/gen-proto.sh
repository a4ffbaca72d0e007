#!/usr/bin/env bash
# Generates the Go code of rootline's protobuf APIs (proto/) with protoc,
# protoc-gen-go and protoc-gen-connect-go, installing what is missing:
# protoc from the Debian package protobuf-compiler (apt-get, as root or
# through sudo), the plugins with `go install` at pinned versions into the
# tool cache (${XDG_CACHE_HOME:-~/.cache}/rootline/bin), as deps.sh does.
# The generated code is committed: CI does not run this. Safe to run again;
# run it after editing a .proto file and commit its output.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/rootline"
tools="$cache/bin"
mkdir -p "$tools"

# Go plugins, as "command:module@version". protoc-gen-go's version is the
# google.golang.org/protobuf of go.mod; protoc-gen-connect-go's is the
# connectrpc.com/connect of go.mod.
gotools=(
  "protoc-gen-go:google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
  "protoc-gen-connect-go:connectrpc.com/connect/cmd/protoc-gen-connect-go@v1.21.1"
)

say() { printf 'gen-proto: %s\n' "$*"; }

command -v go >/dev/null || { say "Go is required (https://go.dev/dl); install it first"; exit 1; }

if ! command -v protoc >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "need root or sudo to install protobuf-compiler"; exit 1; }
    sudo="sudo"
  fi
  say "installing Debian package protobuf-compiler"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
fi

for entry in "${gotools[@]}"; do
  cmd=${entry%%:*} mod=${entry#*:}
  stamp="$tools/.$cmd.version"
  if [ -x "$tools/$cmd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then
    continue
  fi
  say "go install $mod"
  env GOBIN="$tools" go install "$mod"
  echo "$mod" >"$stamp"
done

cd "$root"
mapfile -t protos < <(find proto -name '*.proto' | LC_ALL=C sort)
((${#protos[@]})) || { say "no .proto files under proto/"; exit 1; }
say "protoc $(protoc --version | cut -d' ' -f2): ${protos[*]}"
# module= strips the module path from go_package, so the files land in the
# package directories of this repository.
PATH="$tools:$PATH" protoc \
  --proto_path=proto \
  --go_out=. --go_opt=module=github.com/rootline/rootline \
  --connect-go_out=. --connect-go_opt=module=github.com/rootline/rootline \
  "${protos[@]}"
