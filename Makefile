# cdc-broadcaster: build, test and tooling entry points. `make test` is what
# CI runs (.ci/run); it installs its own dependencies (scripts/test-deps.sh).

GO        ?= go
BIN       := bin/cdc-broadcaster
TOOLS_BIN := $(CURDIR)/.tmp/bin
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 30s
TEST_TIMEOUT ?= 14m

.PHONY: all build test test-deps test-short vet staticcheck fuzz demo cluster bench soak clean

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

# docs/cluster.md on one machine: three NATS JetStream servers, three serve
# nodes (dashboards on 8080-8082), the example school and its simulator.
cluster:
	bash scripts/cluster.sh

# Benchmarks against baselines measured in the same run (BENCHMARKS.md);
# not part of `make test`.
bench:
	bash scripts/bench.sh

# The soak: 30 minutes at 500 rows/s with 1,000 churning clients
# (integration/soak_test.go); report in .tmp/bench/soak.md.
SOAK ?= 30m
soak: test-deps
	mkdir -p .tmp/bench
	CDC_SOAK=$(SOAK) CDC_SOAK_RATE=500 CDC_SOAK_CLIENTS=1000 CDC_SOAK_REPORT=$(CURDIR)/.tmp/bench/soak.md \
		$(GO) test -count=1 -timeout 60m -run '^TestSoak$$' -v ./integration

clean:
	rm -rf bin .tmp
	$(GO) clean -testcache
