#!/usr/bin/env bash
# `make bench`: the benchmarks of BENCHMARKS.md, on this machine, against
# baselines measured in the same run (pg_recvlogical on the same database,
# the minimal coder/websocket program integration/ceiling). Each is a test
# of ./integration that runs only with CDC_BENCH=1; it starts its own
# PostgreSQL like the integration tests. Results (Markdown) go to
# .tmp/bench/results-<time>.md, CPU and heap profiles to .tmp/bench/.
#
#   make bench                          # all of them (~15 minutes)
#   BENCH_RUN=TestBenchFanout make bench   # one
#   make soak                           # the 30-minute soak (separate)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh
mkdir -p .tmp/bench
out="$PWD/.tmp/bench/results-$(date -u +%Y%m%dT%H%M%SZ).md"
{
	echo "# make bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --always --dirty 2>/dev/null || echo dev)"
	echo
	echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
	echo
} >"$out"

CDC_BENCH=1 CDC_BENCH_OUT="$out" go test -count=1 -timeout 60m \
	-run "${BENCH_RUN:-^TestBench}" -v ./integration

if [ -z "${BENCH_RUN:-}" ]; then
	{
		echo "### Micro-benchmarks (go test -bench)"
		echo
		echo '```'
		go test -run '^$' -bench . -benchmem -count 1 ./cdc ./mapping ./eventlog ./metrics | grep -E '^(Benchmark|goos|cpu)'
		echo '```'
	} >>"$out"
fi
echo "bench: results in $out"
