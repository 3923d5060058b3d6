#!/usr/bin/env bash
# Installs what `make test` needs when it is missing, and nothing when it is
# all there (idempotent). Tools go into ./.tmp/bin so nothing global is
# needed beyond Debian packages. Each dependency is one ensure_* function;
# add new ones (chromium, node packages, ...) the same way and call them at
# the bottom.
#
# With arguments, installs only those: `bash scripts/test-deps.sh nats_server`
# runs ensure_nats_server alone (scripts/cluster.sh does).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS_BIN="$ROOT/.tmp/bin"
STATICCHECK_VERSION=v0.8.2
# NATS_SERVER_VERSION is the nats-server the cluster tests run (integration/
# natscluster_test.go); it is a tool, not a dependency in go.mod.
NATS_SERVER_VERSION=v2.15.3
# NATS_CLI_VERSION is the `nats` command docs/operations.md uses to look at
# the stream; `make cluster` installs it (the tests do not need it).
NATS_CLI_VERSION=v0.5.0

log() { echo "test-deps: $*" >&2; }

APT_UPDATED=0
# apt_install installs Debian packages, running apt-get update once first.
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		log "apt-get not found: install $* by hand"
		return 1
	fi
	local sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		sudo="sudo"
	fi
	if [ "$APT_UPDATED" -eq 0 ]; then
		log "apt-get update"
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		APT_UPDATED=1
	fi
	log "apt-get install $*"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# pg_bin_dir prints the newest installed PostgreSQL server bin dir, or nothing.
pg_bin_dir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
		echo "$d"
	fi
}

# ensure_postgres makes sure PostgreSQL server binaries (initdb, pg_ctl,
# postgres) and the postgres system user exist. The integration tests start
# their own throwaway cluster; the Debian package's own cluster is not used.
ensure_postgres() {
	if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/initdb" ]; then
		return 0
	fi
	if [ -z "$(pg_bin_dir)" ]; then
		apt_install postgresql
	fi
	local d
	d=$(pg_bin_dir)
	if [ -z "$d" ]; then
		log "PostgreSQL server binaries still missing under /usr/lib/postgresql/*/bin"
		return 1
	fi
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		log "creating system user postgres"
		useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
	log "postgres: $d"
}

# ensure_staticcheck installs staticcheck into ./.tmp/bin.
ensure_staticcheck() {
	local bin="$TOOLS_BIN/staticcheck"
	if [ -x "$bin" ] && "$bin" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
		return 0
	fi
	mkdir -p "$TOOLS_BIN"
	log "go install honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	GOBIN="$TOOLS_BIN" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
}

# ensure_nats_server installs nats-server into ./.tmp/bin, built from its Go
# module at NATS_SERVER_VERSION; the integration tests start JetStream
# clusters from it.
ensure_nats_server() {
	local bin="$TOOLS_BIN/nats-server"
	if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "nats-server: $NATS_SERVER_VERSION" ]; then
		return 0
	fi
	mkdir -p "$TOOLS_BIN"
	log "go install github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
	GOBIN="$TOOLS_BIN" go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
}

# ensure_node makes sure Node.js and npm exist (the browser adapter's tests),
# then installs client/'s locked dependencies.
ensure_node() {
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		apt_install nodejs npm
	fi
	log "node $(node --version), npm $(npm --version)"
	if [ ! -d client/node_modules ] || [ client/package-lock.json -nt client/node_modules ]; then
		log "npm ci (client/)"
		(cd client && npm ci --no-audit --no-fund --loglevel=error)
	fi
}

# ensure_promtool makes sure promtool exists (docs/docs_test.go checks
# docs/alerts.yaml with `promtool check rules`). Debian's prometheus package
# ships it; installing it may also start a Prometheus service, which the
# tests do not use.
ensure_promtool() {
	if command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ]; then
		return 0
	fi
	apt_install prometheus
	if ! command -v promtool >/dev/null 2>&1 && [ ! -x /usr/bin/promtool ]; then
		log "promtool still missing after installing prometheus"
		return 1
	fi
	log "promtool: $(command -v promtool || echo /usr/bin/promtool)"
}

# ensure_chromium makes sure Debian's Chromium exists at /usr/bin/chromium:
# the browser tests (integration/browser_test.go, e2e/) drive it with
# playwright-core, which downloads no browser of its own. A font for the
# screenshots comes with it.
ensure_chromium() {
	if [ -x /usr/bin/chromium ]; then
		return 0
	fi
	apt_install chromium fonts-dejavu-core
	if [ ! -x /usr/bin/chromium ]; then
		log "chromium still missing at /usr/bin/chromium after installing it"
		return 1
	fi
	log "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -1)"
}

# ensure_nats_cli installs the `nats` command into ./.tmp/bin, built from
# its Go module at NATS_CLI_VERSION.
ensure_nats_cli() {
	local bin="$TOOLS_BIN/nats"
	if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qF "${NATS_CLI_VERSION#v}"; then
		return 0
	fi
	mkdir -p "$TOOLS_BIN"
	log "go install github.com/nats-io/natscli/nats@$NATS_CLI_VERSION"
	GOBIN="$TOOLS_BIN" go install "github.com/nats-io/natscli/nats@$NATS_CLI_VERSION"
}

# ensure_e2e_node_modules installs e2e/'s locked dependencies (playwright-core,
# pg) for the browser tests. Needs ensure_node first.
ensure_e2e_node_modules() {
	if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
		log "npm ci (e2e/)"
		(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
	fi
}

if [ "$#" -gt 0 ]; then
	for dep in "$@"; do
		if ! declare -F "ensure_$dep" >/dev/null; then
			log "unknown dependency $dep (want e.g. nats_server for ensure_nats_server)"
			exit 2
		fi
		"ensure_$dep"
	done
	exit 0
fi

ensure_postgres
ensure_staticcheck
ensure_nats_server
ensure_node
ensure_promtool
ensure_chromium
ensure_e2e_node_modules
