#!/usr/bin/env bash
# cluster.sh (`make cluster`): the cluster of docs/cluster.md on one machine,
# to try it out: three NATS JetStream servers, three `serve` nodes on one
# stream (log.backend: nats, replicas 3), the example school and its
# simulator, and the live dashboards on every node.
#
# What `make demo` needs (Go, PostgreSQL, installed if missing), plus
# nats-server, which scripts/test-deps.sh installs into .tmp/bin from its Go
# module at its pinned NATS_SERVER_VERSION. Then, in a temporary directory:
#   PostgreSQL      throwaway, with the example school (migrations/)
#   nats-1..3       one JetStream cluster on loopback, random free ports
#                   (client, route and monitoring), store dirs in the temp dir
#   cdc-broadcaster check            once, the database and the bus
#   node 1          serve --role all on CLUSTER_PORT       (default 8080)
#   node 2          serve --role all on CLUSTER_PORT+1     (8081), a standby reader
#   node 3          serve --role all on CLUSTER_PORT+2     (8082), a standby reader
#   school-sim      against the database
# Every node has server.demo on: its dashboards are at
# http://localhost:<port>/demo/. Ctrl-C stops everything, the NATS servers
# and PostgreSQL too, and deletes the temp dir.
#
# Every node is a reader candidate (docs/operations.md, Reader election and
# failover): node 1 starts first and leads, nodes 2 and 3 stand by. Kill
# node 1's pid and one of them takes the slot over within a second (its log
# says "reader: leading"), the dashboards on every node go on.
# CLUSTER_OTHERS_ROLE=gateway runs nodes 2 and 3 as gateways only.
#
# Everything listens on 127.0.0.1 only: server.demo mints a token for
# anyone who asks.
#
# Environment:
#   CLUSTER_PORT=N       port of node 1; nodes 2 and 3 take N+1 and N+2
#                        (default 8080; stops at once when one is taken)
#   CLUSTER_DURATION=N   stop by itself after N seconds (a smoke test)
#   CLUSTER_RATE=R       simulated changes per second (default 2)
#   CLUSTER_KEEP=1       keep the temp dir (configs, logs, stores) after stopping
#   CLUSTER_OTHERS_ROLE=R  serve --role of nodes 2 and 3: all (default) or gateway
#
# Checked by hand (CLUSTER_DURATION=40 make cluster, in another terminal
# while it runs; T is the temp dir it prints):
#   curl -s localhost:8081/readyz                 200 on each of 8080-8082
#   curl -s -o /dev/null -w '%{http_code}\n' localhost:8082/demo/
#   . T/cluster.env; tok=$(bin/cdc-broadcaster token --config T/node2.yaml --sub 1 --role admin)
#   curl -s -H "Authorization: Bearer $tok" \
#     'localhost:8081/api/realtime/sync?tables=attendance,exams,announcements&wait=20s'
#                                                 events node 1 published, from node 2
#   pgrep -af 'nats-server|school-sim|cdc-broadcaster|cdc-cluster'
#                                                 nothing, after it stopped
# The script itself checks, before it says "running", that every node
# answers /readyz and /demo/, and that an event the simulator causes
# reaches node 2 and node 3 through /api/realtime/sync.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/pg.sh
source "$ROOT/scripts/pg.sh"
SAY_AS=cluster
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

CLUSTER_DURATION=${CLUSTER_DURATION:-}
CLUSTER_RATE=${CLUSTER_RATE:-2}
CLUSTER_KEEP=${CLUSTER_KEEP:-}
CLUSTER_PORT=${CLUSTER_PORT:-8080}
CLUSTER_OTHERS_ROLE=${CLUSTER_OTHERS_ROLE:-all}
NODES=3
STREAM=CDC_EVENTS

if [ -n "$CLUSTER_DURATION" ] && ! [[ "$CLUSTER_DURATION" =~ ^[0-9]+$ ]]; then
	die "CLUSTER_DURATION=$CLUSTER_DURATION: want a whole number of seconds"
fi
if ! [[ "$CLUSTER_PORT" =~ ^[0-9]+$ ]] || [ "$CLUSTER_PORT" -lt 1 ] || [ "$CLUSTER_PORT" -gt $((65535 - NODES + 1)) ]; then
	die "CLUSTER_PORT=$CLUSTER_PORT: want a port number (it and the next $((NODES - 1)) are used)"
fi
case "$CLUSTER_OTHERS_ROLE" in
gateway | all) ;;
*) die "CLUSTER_OTHERS_ROLE=$CLUSTER_OTHERS_ROLE: want all or gateway" ;;
esac
command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/doc/install)"

NODE_PORT=()
for i in $(seq 1 "$NODES"); do
	NODE_PORT[i]=$((CLUSTER_PORT + i - 1))
	if port_busy "${NODE_PORT[i]}"; then
		die "port ${NODE_PORT[i]} (node $i) is already in use (see: ss -ltnp 'sport = :${NODE_PORT[i]}'); stop that program or run with CLUSTER_PORT=<another port>"
	fi
done

# -- Build and install ----------------------------------------------------------
build_binaries
pg_ensure_installed
bash scripts/test-deps.sh nats_server nats_cli
NATS_SERVER="$ROOT/.tmp/bin/nats-server"
[ -x "$NATS_SERVER" ] || die "$NATS_SERVER missing after scripts/test-deps.sh nats_server"

# http_get URL [CURL ARGS...] prints the body and then, on a line of its
# own, the HTTP status (000 when nothing answers).
http_get() {
	local url=$1
	shift
	curl -s -m 30 -w '\n%{http_code}' "$@" "$url" || printf '\n000'
}
command -v curl >/dev/null 2>&1 || die "curl is missing (apt-get install curl): the script waits on the servers' health endpoints with it"

# -- Cleanup: from here on, every exit goes through it ------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cdc-cluster.XXXXXX")
SIM_PID=""
SERVE_PIDS=()
NATS_PIDS=()
TIMER_PID=""

cleanup() {
	local code=$? i log
	trap - EXIT INT TERM
	set +e
	say "stopping"
	# The simulator first, then the nodes (node 1, the reader, last: the
	# others stop retrying for its slot), then NATS, then PostgreSQL.
	[ -n "$TIMER_PID" ] && stop_pids "$TIMER_PID"
	[ -n "$SIM_PID" ] && stop_pids "$SIM_PID"
	if [ "${#SERVE_PIDS[@]}" -gt 1 ]; then
		stop_pids "${SERVE_PIDS[@]:1}"
	fi
	[ "${#SERVE_PIDS[@]}" -gt 0 ] && stop_pids "${SERVE_PIDS[0]}"
	[ "${#NATS_PIDS[@]}" -gt 0 ] && stop_pids "${NATS_PIDS[@]}"
	pg_stop "$TMP"
	if [ -f "$TMP/sim.log" ]; then
		grep -A 100 '^school-sim:' "$TMP/sim.log" >&2 || true
	fi
	for i in $(seq 1 "$NODES"); do
		log="$TMP/node$i.log"
		[ -f "$log" ] && say "node $i logged $(grep -c 'level=ERROR' "$log") errors"
	done
	if [ -n "$CLUSTER_KEEP" ]; then
		say "kept $TMP (configs, logs and stores in it)"
	else
		rm -rf "$TMP"
	fi
	say "stopped and cleaned up"
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- Database -----------------------------------------------------------------
school_db_start "$TMP"

# -- NATS -----------------------------------------------------------------------
# Nine distinct free ports: client, route and monitoring for each server.
# free_port prints one not in USED_PORTS (the caller adds it there: this
# runs in a subshell).
USED_PORTS=" ${NODE_PORT[*]} "
free_port() {
	local p
	while :; do
		p=$(pg_free_port) || return 1
		case "$USED_PORTS" in *" $p "*) continue ;; esac
		echo "$p"
		return 0
	done
}
NATS_CLIENT=() NATS_ROUTE=() NATS_HTTP=()
for i in $(seq 1 "$NODES"); do
	NATS_CLIENT[i]=$(free_port)
	USED_PORTS="$USED_PORTS${NATS_CLIENT[i]} "
	NATS_ROUTE[i]=$(free_port)
	USED_PORTS="$USED_PORTS${NATS_ROUTE[i]} "
	NATS_HTTP[i]=$(free_port)
	USED_PORTS="$USED_PORTS${NATS_HTTP[i]} "
done
ROUTES="" NATS_URLS=""
for i in $(seq 1 "$NODES"); do
	ROUTES="$ROUTES    nats-route://127.0.0.1:${NATS_ROUTE[i]}"$'\n'
	NATS_URLS="$NATS_URLS${NATS_URLS:+, }\"nats://127.0.0.1:${NATS_CLIENT[i]}\""
done
for i in $(seq 1 "$NODES"); do
	mkdir -p "$TMP/nats-$i/store"
	cat >"$TMP/nats-$i/nats.conf" <<EOF
# scripts/cluster.sh: JetStream server $i of $NODES, loopback only
server_name: nats-$i
listen: 127.0.0.1:${NATS_CLIENT[i]}
http: 127.0.0.1:${NATS_HTTP[i]}
reconnect_error_reports: 30
jetstream {
  store_dir: "$TMP/nats-$i/store"
  max_mem: 256MB
  max_file: 2GB
}
cluster {
  name: cdc-cluster
  listen: 127.0.0.1:${NATS_ROUTE[i]}
  routes: [
$ROUTES  ]
}
EOF
	"$NATS_SERVER" -c "$TMP/nats-$i/nats.conf" >"$TMP/nats-$i/nats.log" 2>&1 &
	NATS_PIDS+=($!)
done

# nats_ready: every server answers /healthz (JetStream on and current) and
# they agree on a JetStream meta leader.
nats_ready() {
	local i out leader="" l
	for i in $(seq 1 "$NODES"); do
		out=$(http_get "http://127.0.0.1:${NATS_HTTP[i]}/healthz")
		[ "${out##*$'\n'}" = 200 ] || return 1
		out=$(http_get "http://127.0.0.1:${NATS_HTTP[i]}/jsz")
		l=$(printf '%s' "$out" | tr -d ' \n' | sed -n 's/.*"meta_cluster":{[^}]*"leader":"\([^"]*\)".*/\1/p')
		[ -n "$l" ] || return 1
		[ -z "$leader" ] || [ "$l" = "$leader" ] || return 1
		leader=$l
	done
}
say "starting $NODES NATS servers (JetStream cluster cdc-cluster)"
for try in $(seq 1 300); do
	nats_ready && break
	for i in $(seq 1 "$NODES"); do
		if ! kill -0 "${NATS_PIDS[i - 1]}" 2>/dev/null; then
			tail -n 20 "$TMP/nats-$i/nats.log" >&2
			die "nats-server $i exited (log above)"
		fi
	done
	[ "$try" -lt 300 ] || {
		for i in $(seq 1 "$NODES"); do tail -n 10 "$TMP/nats-$i/nats.log" >&2; done
		die "the NATS cluster is not ready after 30 s (logs above)"
	}
	sleep 0.1
done

# -- Config -------------------------------------------------------------------
# One file per node: the demo's config (scripts/lib.sh) with its own port,
# and the NATS log: every server's URL, the stream on all three (R3).
# The secret is a random dev one, in cluster.env (mode 0600) for `token`.
CDC_AUTH_JWT_SECRET=$(new_dev_secret)
export CDC_AUTH_JWT_SECRET
(umask 077 && echo "export CDC_AUTH_JWT_SECRET=$CDC_AUTH_JWT_SECRET" >"$TMP/cluster.env")
for i in $(seq 1 "$NODES"); do
	port=${NODE_PORT[i]}
	cfg="$TMP/node$i.yaml"
	write_demo_config "$cfg.tmp" "127.0.0.1:$port" "[\"http://localhost:$port\", \"http://127.0.0.1:$port\"]"
	awk -v urls="$NATS_URLS" -v stream="$STREAM" '
		{ print }
		/^  format: text / && !done {
			print "  backend: nats          # scripts/cluster.sh"
			print "  nats:"
			print "    urls: [" urls "]"
			print "    stream: " stream
			print "    subject_prefix: cdc"
			print "    replicas: 3"
			done = 1
		}' "$cfg.tmp" >"$cfg"
	rm -f "$cfg.tmp"
	grep -q '^  backend: nats ' "$cfg" || die "could not set log.backend in $cfg (config.example.yaml changed?)"
done

say "cdc-broadcaster check"
"$CDCB" check --config "$TMP/node1.yaml" >&2 || die "check failed"

# -- Nodes ----------------------------------------------------------------------
# wait_ready I: node I answers /readyz with 200 (30 s at most).
wait_ready() {
	local i=$1 try out
	for try in $(seq 1 300); do
		out=$(http_get "http://127.0.0.1:${NODE_PORT[i]}/readyz")
		[ "${out##*$'\n'}" = 200 ] && return 0
		kill -0 "${SERVE_PIDS[i - 1]}" 2>/dev/null || break
		sleep 0.1
	done
	say "node $i is not ready: /readyz answers ${out//$'\n'/ }; last lines of $TMP/node$i.log:"
	tail -n 20 "$TMP/node$i.log" >&2
	return 1
}

# Node 1 first: it creates the slot and the stream (source.create) and
# takes the slot; the others then find both.
NODE_ROLE=()
for i in $(seq 1 "$NODES"); do
	NODE_ROLE[i]=$CLUSTER_OTHERS_ROLE
	[ "$i" -eq 1 ] && NODE_ROLE[i]=all
	"$CDCB" serve --role "${NODE_ROLE[i]}" --config "$TMP/node$i.yaml" >"$TMP/node$i.log" 2>&1 &
	SERVE_PIDS+=($!)
	wait_for_log "$TMP/node$i.log" "msg=serving" "${SERVE_PIDS[i - 1]}" || die "node $i did not start"
	wait_ready "$i" || die "node $i did not get ready"
	out=$(http_get "http://127.0.0.1:${NODE_PORT[i]}/demo/api/people")
	[ "${out##*$'\n'}" = 200 ] || die "node $i answers ${out##*$'\n'} on /demo/api/people"
done

"$SIM" -db "$DB_SIM" -rate "$CLUSTER_RATE" >"$TMP/sim.log" 2>&1 &
SIM_PID=$!

# An event the simulator causes, read from every node but the reader.
TABLES=exams,exam_sessions,exam_results,grading_tasks,report_cards,attendance,users,students,classes,subjects,academic_terms,announcements,vacancies,applications,uploads
TOKEN=$("$CDCB" token --config "$TMP/node1.yaml" --sub 1 --role admin)
for i in $(seq 2 "$NODES"); do
	out=$(http_get "http://127.0.0.1:${NODE_PORT[i]}/api/realtime/sync?tables=$TABLES&wait=25s" -H "Authorization: Bearer $TOKEN")
	code=${out##*$'\n'}
	if [ "$code" != 200 ] || ! printf '%s' "$out" | grep -q '"eventType"'; then
		die "no event from the simulator on node $i within 25 s (/api/realtime/sync: $code ${out:0:300}); see $TMP/node1.log and $TMP/sim.log"
	fi
	type=$(printf '%s' "$out" | sed -n 's/.*"eventType":"\([^"]*\)".*/\1/p' | head -1)
	say "node $i delivered $type, published by node 1"
done

NATS_LINES=""
for i in $(seq 1 "$NODES"); do
	NATS_LINES="$NATS_LINES  nats-$i         pid ${NATS_PIDS[i - 1]}, nats://127.0.0.1:${NATS_CLIENT[i]}, monitoring http://127.0.0.1:${NATS_HTTP[i]}/jsz, log $TMP/nats-$i/nats.log"$'\n'
done
NODE_LINES="" URL_LINES=""
for i in $(seq 1 "$NODES"); do
	role="serve --role ${NODE_ROLE[i]}"
	if [ "$i" -eq 1 ]; then
		role="$role, the leading reader"
	elif [ "${NODE_ROLE[i]}" = all ]; then
		role="$role, a standby reader"
	fi
	NODE_LINES="$NODE_LINES  node $i         pid ${SERVE_PIDS[i - 1]}, $role, config $TMP/node$i.yaml, log $TMP/node$i.log"$'\n'
	URL_LINES="$URL_LINES    node $i   http://localhost:${NODE_PORT[i]}/demo/"$'\n'
done

cat >&2 <<EOF

cluster: running
  PostgreSQL     127.0.0.1:$PG_PORT, database school (log $TMP/pg/postgres.log)
$NATS_LINES$NODE_LINES  school-sim     pid $SIM_PID, $CLUSTER_RATE changes/s, log $TMP/sim.log
  stream         $STREAM, 3 replicas; admin token: . $TMP/cluster.env, then
                 bin/cdc-broadcaster token --config $TMP/node1.yaml --sub 1 --role admin
  nats CLI       .tmp/bin/nats --server nats://127.0.0.1:${NATS_CLIENT[1]} stream info $STREAM
  $([ -n "$CLUSTER_DURATION" ] && echo "Stopping by itself after $CLUSTER_DURATION s; " || true)Ctrl-C stops everything and deletes $TMP.

  The dashboards, one per node, all fed by the one stream:
$URL_LINES
  Open a teacher on one node and a student of the same class on another.

EOF

# Wait for the timer, a signal, or any program to end (none should).
WATCH=("${NATS_PIDS[@]}" "${SERVE_PIDS[@]}" "$SIM_PID")
if [ -n "$CLUSTER_DURATION" ]; then
	sleep "$CLUSTER_DURATION" &
	TIMER_PID=$!
	WATCH+=("$TIMER_PID")
fi
wait -n "${WATCH[@]}" || true
if [ -n "$TIMER_PID" ] && ! kill -0 "$TIMER_PID" 2>/dev/null; then
	TIMER_PID=""
	say "CLUSTER_DURATION=$CLUSTER_DURATION reached"
	exit 0
fi
for i in $(seq 1 "$NODES"); do
	kill -0 "${NATS_PIDS[i - 1]}" 2>/dev/null || say "nats-$i ended; see $TMP/nats-$i/nats.log"
	kill -0 "${SERVE_PIDS[i - 1]}" 2>/dev/null || say "node $i ended; see $TMP/node$i.log"
done
kill -0 "$SIM_PID" 2>/dev/null || say "school-sim ended; see $TMP/sim.log"
exit 1
