# lib.sh: what scripts/demo.sh (`make demo`) and scripts/cluster.sh
# (`make cluster`) share. Sourced, after scripts/pg.sh, from the repository
# root; the caller sets SAY_AS (the prefix of its messages) first.
#
#   say MSG, die MSG             a message on stderr; die exits 1
#   port_busy PORT               something accepts connections on 127.0.0.1:PORT
#   build_binaries               bin/cdc-broadcaster and bin/school-sim (in BIN_DIR
#                                when set); sets CDCB, SIM
#   stop_pids PID...             SIGTERM, up to 10 s, then SIGKILL
#   wait_for_log FILE PAT PID    until FILE shows PAT, or PID dies
#   school_db_start DIR          pg_start DIR, the example school from migrations/;
#                                sets DB_SIM (superuser) and DB_CDC (the broadcaster's role)
#   write_demo_config OUT LISTEN ORIGINS
#                                config.example.yaml with the demo's edits
#   new_dev_secret               a random HMAC secret on stdout
#   format_events                `cdc-broadcaster tail`'s JSON lines on stdin as
#                                columns on stdout, each as soon as it arrives

SAY_AS=${SAY_AS:-script}

say() { echo "$SAY_AS: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# port_busy PORT: something already accepts connections on it.
port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# build_binaries builds bin/cdc-broadcaster and bin/school-sim (in BIN_DIR
# instead when it is set: the tests' own directory) and sets CDCB and SIM to
# their paths.
build_binaries() {
	local version dir=${BIN_DIR:-$ROOT/bin}
	say "building $dir/cdc-broadcaster and $dir/school-sim"
	version=$(git describe --always --dirty 2>/dev/null || echo dev)
	go build -ldflags "-X main.version=$version" -o "$dir/cdc-broadcaster" ./cmd/cdc-broadcaster
	go build -o "$dir/school-sim" ./cmd/school-sim
	CDCB="$dir/cdc-broadcaster"
	SIM="$dir/school-sim"
}

# stop_pids PID... sends SIGTERM, waits up to 10 s, then SIGKILL.
stop_pids() {
	local pid i alive
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for i in $(seq 1 100); do
		alive=0
		for pid in "$@"; do
			if kill -0 "$pid" 2>/dev/null; then
				alive=1
			fi
		done
		[ "$alive" -eq 0 ] && break
		sleep 0.1
	done
	for pid in "$@"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

# wait_for_log FILE PATTERN PID: until the log shows PATTERN, or PID dies
# (20 s at most).
wait_for_log() {
	local file=$1 pattern=$2 pid=$3 i
	for i in $(seq 1 200); do
		if grep -q "$pattern" "$file" 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	say "no \"$pattern\" in $file; last lines:"
	tail -n 20 "$file" >&2
	return 1
}

# school_db_start DIR starts a throwaway PostgreSQL in DIR/pg (scripts/pg.sh)
# and loads the example school into database school. Sets DB_SIM (the
# superuser, for school-sim) and DB_CDC (the broadcaster's own role from
# 002_replication.sql, with no password: the throwaway cluster trusts
# loopback connections).
school_db_start() {
	local dir=$1 f
	say "starting PostgreSQL in $dir"
	pg_start "$dir"
	pg_psql postgres -c "CREATE DATABASE school" >/dev/null
	for f in 001_school_schema.sql 002_replication.sql 003_emit.sql 010_example_data.sql; do
		say "applying migrations/$f"
		pg_psql school -f "migrations/$f" >/dev/null
	done
	# The dashboards' data endpoints (demo/) also show people's names, which
	# 002_replication.sql keeps from the broadcaster's role.
	pg_psql school -c "GRANT SELECT (first_name, last_name) ON users TO cdc_broadcaster" >/dev/null
	DB_SIM="postgres://postgres@127.0.0.1:$PG_PORT/school"
	DB_CDC="postgres://cdc_broadcaster@127.0.0.1:$PG_PORT/school"
}

# write_demo_config OUT LISTEN ORIGINS writes config.example.yaml to OUT with
# DB_CDC as the database, text logs, LISTEN as server.listen, ORIGINS (a
# YAML list) as server.allowed_origins, server.demo on, and, since every
# connection comes from this machine, the per-IP connection limit raised
# for reloads and many tabs.
write_demo_config() {
	local out=$1 listen=$2 origins=$3 want
	sed -e "s|^  database_url: .*|  database_url: $DB_CDC|" \
		-e 's|^  format: json |  format: text |' \
		-e "s|^  listen: .*|  listen: \"$listen\"|" \
		-e "s|^  allowed_origins: .*|  allowed_origins: $origins|" \
		-e 's|^  demo: false |  demo: true |' \
		-e 's|^  max_connections_per_ip_per_minute: .*|  max_connections_per_ip_per_minute: 600|' \
		config.example.yaml >"$out"
	for want in "  database_url: $DB_CDC" '  format: text ' "  listen: \"$listen\"" '  allowed_origins: [' \
		'  demo: true ' '  max_connections_per_ip_per_minute: 600'; do
		grep -qF "$want" "$out" || die "could not set \"$want\" in $out (config.example.yaml changed?)"
	done
}

# new_dev_secret prints a random 32-byte HMAC secret in hex.
new_dev_secret() {
	od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}

# format_events turns `cdc-broadcaster tail`'s JSON lines
# ({"channels":[...],"event":{"eventId":...,"eventType":...,"table":...,
# ...,"userId":...,"txId":N}}, cmd/cdc-broadcaster/tail.go) into columns:
# eventType, table, channels, user=userId ("-" for none). A line of another
# shape passes through unchanged.
#
# Bash alone, and no awk: on a pipe, bash's read takes one byte at a time
# and returns at the newline, and printf is a builtin whose output bash
# flushes at once, so each event is printed as it arrives. Debian's awk is
# mawk, which reads a pipe a 4 KiB block at a time and waits for the block
# to fill (stdbuf cannot change that: mawk calls read(2) itself; `mawk -W
# interactive` would, but it is mawk's own option, and awk may be another
# awk): the demo's feed stalled for tens of seconds, then came in a burst.
# Nor is jq needed, which Debian does not install by default.
format_events() {
	local line head user channels
	head='^\{"channels":\[([^]]*)\],"event":\{"eventId":"[^"]*","cursor":"[^"]*","eventType":"([^"\\]*)","table":"([^"\\]*)",'
	user='"userId":"([^"\\]*)","txId":[0-9]+\}\}$'
	while IFS= read -r line || [ -n "$line" ]; do
		if [[ $line =~ $head ]]; then
			channels=${BASH_REMATCH[1]//\"/}
			printf '%-28s %-15s %-58s user=' "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" "$channels"
			if [[ $line =~ $user ]]; then
				printf '%s\n' "${BASH_REMATCH[1]}"
			else
				printf -- '-\n'
			fi
		else
			printf '%s\n' "$line"
		fi
	done
}
