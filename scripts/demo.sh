#!/usr/bin/env bash
# demo.sh (`make demo`): the broadcaster on a live, simulated school, with
# the live dashboards at http://localhost:8080/demo/.
#
# On a Debian machine with Go, as root or as a user with sudo: installs
# PostgreSQL if missing, builds bin/cdc-broadcaster and bin/school-sim,
# starts a throwaway cluster in a temporary directory, loads the example
# school (migrations/), then runs
#   cdc-broadcaster check            once, to show the config fits the schema
#   cdc-broadcaster serve            in the background, with server.demo on:
#                                    the dashboards at /demo/
#   cdc-broadcaster tail             in the foreground: one line per event,
#                                    as it happens (format_events, scripts/lib.sh)
#   school-sim                       in the background
# Their logs go to .tmp/demo/ (serve.log, tail.log, sim.log; postgres.log is
# copied there on exit), replaced by the next run. Ctrl-C stops everything,
# stops the cluster and deletes the temp dir; the logs stay.
#
# server.demo mints a token for anyone who asks: the demo listens on
# 127.0.0.1 only, unless DEMO_HOST says otherwise.
#
# Environment:
#   DEMO_PORT=N       port of serve and the dashboards (default 8080; the
#                     demo stops at once when it is taken)
#   DEMO_HOST=H       address to listen on (default 127.0.0.1; 0.0.0.0 to
#                     open the dashboards from another machine)
#   DEMO_DURATION=N   stop by itself after N seconds (a smoke test)
#   DEMO_RATE=R       simulated changes per second (default 2)
#   DEMO_KEEP=1       keep the temp dir (database, config) after stopping
#   DEMO_LOG_DIR=D    where the logs go (default .tmp/demo)
#   BIN_DIR=D         where the binaries are built (default bin)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
source "$ROOT/scripts/pg.sh"
SAY_AS=demo
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

DEMO_DURATION=${DEMO_DURATION:-}
DEMO_RATE=${DEMO_RATE:-2}
DEMO_KEEP=${DEMO_KEEP:-}
DEMO_PORT=${DEMO_PORT:-8080}
DEMO_HOST=${DEMO_HOST:-127.0.0.1}
DEMO_LOG_DIR=${DEMO_LOG_DIR:-$ROOT/.tmp/demo}

if [ -n "$DEMO_DURATION" ] && ! [[ "$DEMO_DURATION" =~ ^[0-9]+$ ]]; then
	die "DEMO_DURATION=$DEMO_DURATION: want a whole number of seconds"
fi
if ! [[ "$DEMO_PORT" =~ ^[0-9]+$ ]] || [ "$DEMO_PORT" -lt 1 ] || [ "$DEMO_PORT" -gt 65535 ]; then
	die "DEMO_PORT=$DEMO_PORT: want a port number"
fi
command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/doc/install)"

if port_busy "$DEMO_PORT"; then
	die "port $DEMO_PORT is already in use (see: ss -ltnp 'sport = :$DEMO_PORT'); stop that program or run with DEMO_PORT=<another port>"
fi

# -- Build ------------------------------------------------------------------
build_binaries

pg_ensure_installed

# -- Logs: kept after the exit, unlike the temp dir --------------------------
mkdir -p "$DEMO_LOG_DIR"
LOGS=$(cd "$DEMO_LOG_DIR" && pwd)
rm -f "$LOGS/serve.log" "$LOGS/tail.log" "$LOGS/sim.log" "$LOGS/postgres.log"

# -- Cleanup: from here on, every exit goes through it ------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cdc-demo.XXXXXX")
PIDS=()

cleanup() {
	local code=$?
	trap - EXIT INT TERM
	set +e
	say "stopping"
	# The simulator first, so that the last changes still reach tail.
	if [ "${#PIDS[@]}" -gt 0 ]; then
		stop_pids "${PIDS[0]}"
		[ "${#PIDS[@]}" -gt 1 ] && stop_pids "${PIDS[@]:1}"
	fi
	pg_stop "$TMP"
	[ -f "$TMP/pg/postgres.log" ] && cp "$TMP/pg/postgres.log" "$LOGS/postgres.log"
	if [ -f "$LOGS/sim.log" ]; then
		grep -A 100 '^school-sim:' "$LOGS/sim.log" >&2 || true
	fi
	if [ -f "$LOGS/serve.log" ]; then
		say "serve logged $(grep -c 'level=ERROR' "$LOGS/serve.log") errors"
	fi
	if [ -n "$DEMO_KEEP" ]; then
		say "kept $TMP (database, config)"
	else
		rm -rf "$TMP"
	fi
	say "stopped and cleaned up; logs in $LOGS: $(cd "$LOGS" && echo *.log)"
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- Database -----------------------------------------------------------------
school_db_start "$TMP"

# -- Config -------------------------------------------------------------------
# The broadcaster connects as its own role (DB_CDC), server.demo on.
CONFIG="$TMP/config.yaml"
URL_HOST=localhost
[ "$DEMO_HOST" = "127.0.0.1" ] || [ "$DEMO_HOST" = "0.0.0.0" ] || URL_HOST=$DEMO_HOST
ORIGINS="[\"http://localhost:$DEMO_PORT\", \"http://127.0.0.1:$DEMO_PORT\", \"http://$URL_HOST:$DEMO_PORT\"]"
write_demo_config "$CONFIG" "$DEMO_HOST:$DEMO_PORT" "$ORIGINS"
CDC_AUTH_JWT_SECRET=$(new_dev_secret)
export CDC_AUTH_JWT_SECRET

say "cdc-broadcaster check"
"$CDCB" check --config "$CONFIG" >&2 || die "check failed"

# -- Programs -----------------------------------------------------------------
"$CDCB" serve --config "$CONFIG" >"$LOGS/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
wait_for_log "$LOGS/serve.log" "msg=serving" "$SERVE_PID" || die "serve did not start"
DEMO_URL="http://$URL_HOST:$DEMO_PORT/demo/"
if command -v curl >/dev/null 2>&1; then
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DEMO_PORT/demo/api/people" || true)
	[ "$code" = 200 ] || die "serve answers $code on /demo/api/people: is server.demo wired in cmd/cdc-broadcaster/serve.go (demo/README.md)? See $LOGS/serve.log"
fi

"$CDCB" tail --config "$CONFIG" 2>"$LOGS/tail.log" > >(format_events) &
TAIL_PID=$!
PIDS+=("$TAIL_PID")
wait_for_log "$LOGS/tail.log" "msg=streaming" "$TAIL_PID" || die "tail did not start"

"$SIM" -db "$DB_SIM" -rate "$DEMO_RATE" >"$LOGS/sim.log" 2>&1 &
SIM_PID=$!
PIDS=("$SIM_PID" "${PIDS[@]}") # stopped first

cat >&2 <<EOF

demo: running
  PostgreSQL     127.0.0.1:$PG_PORT, database school (data in $TMP/pg, log $TMP/pg/postgres.log,
                 copied to $LOGS on exit)
  serve          pid $SERVE_PID, log $LOGS/serve.log
  tail           pid $TAIL_PID, events below (its log $LOGS/tail.log)
  school-sim     pid $SIM_PID, $DEMO_RATE changes/s, log $LOGS/sim.log
  config         $CONFIG (CDC_AUTH_JWT_SECRET is a random dev secret)
  $([ -n "$DEMO_DURATION" ] && echo "Stopping by itself after $DEMO_DURATION s; " || true)Ctrl-C stops everything and deletes $TMP;
  the logs stay in $LOGS.

  Open $DEMO_URL
  and pick someone: a teacher and a student of the same class side by
  side show it best. The events follow here.

EOF

# Wait for the timer, or for tail to end (it should not) or a signal.
if [ -n "$DEMO_DURATION" ]; then
	sleep "$DEMO_DURATION" &
	PIDS+=($!)
	wait $! || true
	say "DEMO_DURATION=$DEMO_DURATION reached"
else
	wait "$TAIL_PID" || true
	say "tail ended; see $LOGS/tail.log"
fi
