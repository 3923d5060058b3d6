# cdc-broadcaster: build, test and tooling entry points. `make test` is what
# CI runs (.ci/run); it installs its own dependencies (scripts/test-deps.sh).

GO        ?= go
BIN       := bin/cdc-broadcaster
TOOLS_BIN := $(CURDIR)/.tmp/bin
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 30s
TEST_TIMEOUT ?= 14m

.PHONY: all build test test-deps test-short vet staticcheck fuzz demo bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cdc-broadcaster

test-deps:
	bash scripts/test-deps.sh

vet:
	$(GO) vet ./...

staticcheck: test-deps
	$(TOOLS_BIN)/staticcheck ./...

# Integration tests (./integration) start their own PostgreSQL cluster.
test: test-deps
	$(GO) vet ./...
	$(TOOLS_BIN)/staticcheck ./...
	cd client && npm test && npm run build
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Unit tests only: everything but ./integration.
test-short:
	$(GO) test -race -short -count=1 $$($(GO) list ./... | grep -v '/integration$$')

# Runs every Fuzz* target of every package for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$list"; exit 1; }; \
		for fz in $$(echo "$$list" | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$fz ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fz\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

demo:
	@if [ -f scripts/demo.sh ]; then \
		bash scripts/demo.sh; \
	else \
		echo "make demo: scripts/demo.sh does not exist yet (the demo arrives with issue 5)" >&2; exit 1; \
	fi

bench:
	@if [ -f scripts/bench.sh ]; then \
		bash scripts/bench.sh; \
	else \
		echo "make bench: scripts/bench.sh does not exist yet" >&2; exit 1; \
	fi

clean:
	rm -rf bin .tmp
	$(GO) clean -testcache
