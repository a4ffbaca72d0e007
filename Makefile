# rootline — each target is a thin wrapper over commands you can type.
#
#   make demo    build and run the walkthrough (installs what is missing)
#   make test    run every test (installs what is missing)
#
# Outside programs (Debian packages, pinned Go tools) are installed by
# `make deps` into the system (apt-get) or into $(TOOLS) (go install).

GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin
CACHE     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rootline
TOOLS     := $(CACHE)/bin
PKGS      := ./...
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
export PATH := $(TOOLS):$(PATH)

.PHONY: all deps build test race bench fuzz lint demo clean generate

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/rootline ./cmd/rootline

test: deps
	$(GO) test -count=1 $(PKGS)

race: deps
	$(GO) test -race -count=1 $(PKGS)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

# Regenerate the protobuf/Connect code from proto/ (installs protoc and the
# plugins; the generated code is committed, so builds never need this).
generate:
	@scripts/gen-proto.sh

# Every Fuzz target, each for $(FUZZTIME).
fuzz: deps
	@scripts/fuzz.sh $(FUZZTIME)

lint: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: the files above need formatting'; exit 1; }
	$(GO) vet $(PKGS)
	staticcheck $(PKGS)

demo: deps build
	$(BIN)/rootline demo

clean:
	rm -rf $(BIN)
	$(GO) clean -testcache
