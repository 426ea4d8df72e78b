# Tearline: the commands CI runs (.ci/run calls `make test`).
# Everything the targets need is built from the Go module proxy into .bin/,
# pinned by tools/go.mod and tools/buf/go.mod.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
GO ?= go
FUZZTIME ?= 30s
# fuzz-short (run by `make test`) gives each target FUZZTIME_SHORT.
FUZZTIME_SHORT ?= 3s

.PHONY: all build test sysdeps tools generate check-generated lint vet cross fmt-check fuzz-short fuzz bench run clean vaultdev test-vault faults

all: build

build:
	$(GO) build ./...

## test: everything CI checks: tools, lint, generated code, vet, the CLI
## built for Windows and macOS, race tests, a short fuzz pass.
test: sysdeps tools lint check-generated vet cross vaultdev
	TEARLINE_VAULTDEV=$$(GO=$(GO) internal/testvault/build.sh) $(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz-short

## cross: the tearline binary builds for the systems a liaison officer
## may run the CLI on (the node itself is deployed on Linux).
cross:
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/tearline
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/tearline

## vaultdev: build the Vault test server (internal/testvault/vaultdev, its own
## module) into ~/.cache/tearline/ ($XDG_CACHE_HOME/tearline/ if set), once per change of its sources.
vaultdev:
	@GO=$(GO) internal/testvault/build.sh

## test-vault: the integration tests against a real Vault, verbosely.
test-vault: vaultdev
	TEARLINE_VAULTDEV=$$(GO=$(GO) internal/testvault/build.sh) $(GO) test -race -count=1 -v -run 'Vault' ./pki ./gateway ./cmd/tearline/cli

## sysdeps: the Debian packages the tests call (deploy/vault/bootstrap.sh
## uses curl and jq; the build script uses flock); installed when missing.
sysdeps:
	@missing=""; for c in curl jq flock; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing from Debian's packages"; \
		apt-get update -qq && apt-get install -y -qq curl jq util-linux >/dev/null; \
	fi

TOOLS := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

tools: $(TOOLS)

$(BIN)/buf: tools/buf/go.mod tools/buf/go.sum
	cd tools/buf && GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf

$(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc &: tools/go.mod tools/go.sum
	cd tools && GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

## generate: regenerate the Go code of the API from proto/.
generate: tools
	buf generate

## check-generated: fail when the committed generated code differs from what the protos give.
check-generated: tools
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	buf generate -o $$tmp; \
	if ! diff -r -q <(cd $$tmp/proto && find . -name '*.go' | sort | xargs cat) <(cd proto && find . -name '*.go' | sort | xargs cat) >/dev/null; then \
		echo "generated code under proto/ is stale: run 'make generate' and commit"; \
		diff -r $$tmp/proto proto -x '*.proto' | head -40; exit 1; \
	fi; echo "generated code is up to date"

## lint: buf lint (STANDARD), buf breaking against main when main exists, gofmt.
lint: tools fmt-check
	buf lint
	@if git rev-parse --verify -q main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then \
		buf breaking --against '.git#branch=main'; echo "buf breaking: no breaking change against main"; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## fuzz-short: run every fuzz target briefly (FUZZTIME_SHORT each); see .ci/fuzz.sh.
fuzz-short:
	@GO=$(GO) .ci/fuzz.sh $(FUZZTIME_SHORT)

## fuzz: run every fuzz target for FUZZTIME each (default 30s) and print
## how many ran and the seconds each took. Targets are discovered with
## `go test -list '^Fuzz'`; .ci/fuzz.sh says how a run is bounded.
fuzz:
	@GO=$(GO) .ci/fuzz.sh $(FUZZTIME)

## bench: measure two node processes on loopback against this machine's
## limits (issue 7); prints the table. BENCHFLAGS passes flags, e.g.
## BENCHFLAGS='--json' or BENCHFLAGS='--duration 20s'.
bench:
	$(GO) run ./cmd/tearline bench $(BENCHFLAGS)

## faults: the fault-injection suite (issue 8, not part of `make test`):
## real node processes under SIGKILL, network cuts (internal/faultproxy) and
## a full or read-only disk (a tmpfs: needs root). A few minutes; ends with a
## summary table of cycles and reports checked, lost, doubled, out of order.
## The suite runs without -race (the nodes are processes built without it);
## the product code it exercises runs under -race in `make test`.
faults:
	$(GO) vet -tags faults ./cmd/tearline
	$(GO) test -tags faults -count=1 -v -run '^TestFaults$$' -timeout 12m ./cmd/tearline

## run: the local development federation.
run:
	$(GO) run ./cmd/tearline dev

clean:
	rm -rf $(BIN) tearline-dev
