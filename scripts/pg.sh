#!/usr/bin/env bash
# pg.sh: a throwaway PostgreSQL cluster in a directory of your choice, for
# the demo and for trying things by hand. Not for production: trust
# authentication, fsync off.
#
# As a command:
#   bash scripts/pg.sh start DIR   # prints the superuser URL on stdout
#   bash scripts/pg.sh stop DIR
#   bash scripts/pg.sh install     # apt-get install postgresql if missing
#
# Sourced (scripts/demo.sh does): pg_ensure_installed, pg_start DIR (sets
# PG_PORT, PG_SOCK and PG_URL), pg_psql DB ARGS..., pg_stop DIR.
#
# The cluster lives in DIR/pg: data, unix socket and server log. It listens
# on 127.0.0.1 at a free port, with wal_level = logical. PostgreSQL refuses
# to run as root, so as root the server binaries run as the `postgres`
# system user (created if missing) through runuser.

PG_BIN=${PG_BIN:-}
PG_PORT=""
PG_SOCK=""
PG_URL=""

pg_log() { echo "pg: $*" >&2; }

# pg_bin_dir prints the newest installed server bin dir, or nothing.
pg_bin_dir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ]; then
		echo "$d"
	fi
}

# pg_ensure_installed installs the Debian postgresql package when no server
# binaries are found (as scripts/test-deps.sh does) and sets PG_BIN.
pg_ensure_installed() {
	if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]; then
		return 0
	fi
	if [ -z "$(pg_bin_dir)" ]; then
		if ! command -v apt-get >/dev/null 2>&1; then
			pg_log "PostgreSQL server binaries not found and apt-get missing: install PostgreSQL, or set PG_BIN"
			return 1
		fi
		local sudo=""
		if [ "$(id -u)" -ne 0 ]; then
			sudo="sudo"
		fi
		pg_log "installing PostgreSQL (apt-get update, apt-get install postgresql)"
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	fi
	PG_BIN=$(pg_bin_dir)
	if [ -z "$PG_BIN" ]; then
		pg_log "PostgreSQL server binaries still missing under /usr/lib/postgresql/*/bin"
		return 1
	fi
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		pg_log "creating system user postgres"
		useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
}

# pg_as_owner runs a server binary as the cluster's owner: postgres when
# we are root, else ourselves. From / so that runuser never lands in a
# directory postgres cannot read.
pg_as_owner() {
	local bin=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && runuser -u postgres -- env LC_ALL=C LANG=C "$PG_BIN/$bin" "$@")
	else
		(cd / && env LC_ALL=C LANG=C "$PG_BIN/$bin" "$@")
	fi
}

# pg_free_port prints a TCP port nothing listens on at 127.0.0.1.
pg_free_port() {
	local port tries
	for tries in $(seq 1 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	pg_log "no free port found"
	return 1
}

# pg_start DIR creates and starts a cluster in DIR/pg; sets PG_PORT, PG_SOCK
# and PG_URL (the postgres superuser on database postgres).
pg_start() {
	local dir=$1 pg
	pg_ensure_installed
	pg="$dir/pg"
	PG_SOCK="$pg/sock"
	mkdir -p "$pg/data" "$PG_SOCK"
	touch "$pg/postgres.log"
	if [ "$(id -u)" -eq 0 ]; then
		chmod 0755 "$dir"
		chown -R postgres: "$pg"
	fi
	pg_as_owner initdb -D "$pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$pg/initdb.log" 2>&1 || {
		pg_log "initdb failed:"
		cat "$pg/initdb.log" >&2
		return 1
	}
	PG_PORT=$(pg_free_port)
	cat >>"$pg/data/postgresql.conf" <<EOF

# throwaway cluster (scripts/pg.sh): not durable
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCK'
wal_level = logical
max_replication_slots = 16
max_wal_senders = 16
fsync = off
full_page_writes = off
log_min_messages = warning
EOF
	cat >"$pg/data/pg_hba.conf" <<EOF
# throwaway cluster (scripts/pg.sh): trust local and loopback connections
local all         all               trust
local replication all               trust
host  all         all 127.0.0.1/32  trust
host  replication all 127.0.0.1/32  trust
EOF
	pg_as_owner pg_ctl -D "$pg/data" -l "$pg/postgres.log" -w -t 60 start >/dev/null || {
		pg_log "pg_ctl start failed; server log:"
		tail -n 30 "$pg/postgres.log" >&2
		return 1
	}
	PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

# pg_psql DB ARGS... runs psql as the superuser against database DB,
# stopping at the first error.
pg_psql() {
	local db=$1
	shift
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" "$@"
}

# pg_stop DIR stops the cluster in DIR/pg, if it runs (fast shutdown:
# clients are disconnected).
pg_stop() {
	local data="$1/pg/data"
	if [ -f "$data/postmaster.pid" ]; then
		[ -n "$PG_BIN" ] || PG_BIN=$(pg_bin_dir)
		pg_as_owner pg_ctl -D "$data" -m fast -w -t 60 stop >/dev/null ||
			pg_as_owner pg_ctl -D "$data" -m immediate -w -t 60 stop >/dev/null
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	case "${1:-}" in
	install) pg_ensure_installed ;;
	start)
		[ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
		pg_start "$2"
		echo "$PG_URL"
		;;
	stop)
		[ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
		pg_stop "$2"
		;;
	*)
		echo "usage: $0 install | start DIR | stop DIR" >&2
		exit 2
		;;
	esac
fi
