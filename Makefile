# Gatehouse — the two commands are `make demo` and `make test`; `make help` lists the rest.
# Tools are pinned and installed into the repo-local .bin/ on first use.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1

TEST_TIMEOUT ?= 9m
FUZZTIME ?= 200000x

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/buf:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(BIN)/protoc-gen-go:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-connect-go:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)

TOOLS := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go

.PHONY: tools
tools: $(TOOLS) ## Install the pinned code-generation tools into .bin/.

.PHONY: build
build: ## Build the gatehouse binary into .bin/gatehouse.
	$(GO) build -o $(BIN)/gatehouse ./cmd/gatehouse

.PHONY: test
test: ## Run every test (real Raft, Badger, MQTT, Connect on loopback); under 10 minutes.
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: race
race: ## Run every test under the race detector.
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: bench
bench: build ## Run all benchmarks and write BENCHMARKS.md.
	$(BIN)/gatehouse bench all --markdown BENCHMARKS.md

.PHONY: bench-quick
bench-quick: build ## Run all benchmarks in quick mode (under 60 s); JSON lines on stdout.
	$(BIN)/gatehouse bench all --quick

.PHONY: proto
proto: $(TOOLS) ## Regenerate the protobuf and Connect code under proto/gen.
	$(BIN)/buf format -w
	$(BIN)/buf generate

.PHONY: checkproto
checkproto: proto ## Fail if regenerating the protobuf code changes anything.
	@git add -N proto >/dev/null 2>&1 || true
	@if ! git diff --quiet --exit-code -- proto buf.yaml buf.gen.yaml; then \
		echo "generated code is stale: run 'make proto' and commit"; git diff --stat -- proto; exit 1; fi

.PHONY: lint
lint: $(BIN)/buf ## go vet, buf lint, buf format check, gofmt.
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './proto/gen/*' -not -path './.bin/*')); \
		if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (bounded).
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

.PHONY: demo
demo: build ## Run hub + a 3-node site + simulated devices; console at http://127.0.0.1:8080/.
	$(BIN)/gatehouse demo

.PHONY: e2e
e2e: build ## End-to-end tests: the real binary run as processes.
	GATEHOUSE_BIN=$(BIN)/gatehouse $(GO) test -count=1 -tags e2e -run 'E2E' -timeout 15m ./...

.PHONY: partition
partition: ## Partition matrix, safety checker and soak under -race, then quick revoke/catchup runs (minutes).
	GATEHOUSE_PARTITION_LONG=1 $(GO) test -race -count=1 -timeout 20m -skip TestBenchmarksRun ./sim/partition
	GATEHOUSE_PARTITION_LONG=1 $(GO) test -count=1 -timeout 10m -run TestBenchmarksRun ./sim/partition

.PHONY: clean
clean: ## Remove build outputs (keeps the pinned tools).
	rm -f $(BIN)/gatehouse
