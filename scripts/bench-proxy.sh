#!/usr/bin/env bash
# Proxy benchmark, in one run: small GETs straight to a fake app vs through the release edge
# (3 alternating rounds, 32 keep-alive connections, medians compared), then 100 MB streamed down
# and up through the edge while its peak RSS is read. Writes target/bench/proxy.json.
#
# Env: BENCH_REQUESTS (30000 per run), BENCH_STREAM_MB (100), BENCH_PERF=1 (profile the edge with
#      `perf record -e cpu-clock`; report in target/bench/proxy-perf.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# The load generator's events are test-mode events.
export STRIPE_EXPECT_LIVEMODE=false

out=target/bench
mkdir -p "$out"
use_scratch_dir edge-proxy-bench

echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tests --bin edge --bin proxybench
echo "==> starting a throwaway PostgreSQL (the edge checks its schema at start-up)"
start_throwaway_pg "$work"
./target/release/edge migrate >/dev/null

port=$(free_port); admin=$(free_port); app=$(free_port)
echo "==> edge on 127.0.0.1:$port in front of the fake app on 127.0.0.1:$app"
RUST_LOG=warn EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin UPSTREAM_URL=http://127.0.0.1:$app \
  STRIPE_WEBHOOK_SECRET=whsec_proxy_bench ./target/release/edge serve >"$work/edge.log" 2>&1 &
edge_pid=$!
scratch_pids+=("$edge_pid")
wait_for_url "http://127.0.0.1:$admin/ready"

if [ "${BENCH_PERF:-}" = 1 ]; then
  perf record -q -e cpu-clock -F 2000 -g -p "$edge_pid" -o "$work/perf.data" >/dev/null 2>&1 &
  perf_pid=$!
fi
./target/release/proxybench --edge 127.0.0.1:$port --edge-pid $edge_pid --upstream-port $app \
  --requests "${BENCH_REQUESTS:-30000}" --stream-mb "${BENCH_STREAM_MB:-100}" --json "$out/proxy.json"
echo "written: $out/proxy.json"
if [ "${BENCH_PERF:-}" = 1 ]; then
  perf_stop_and_report "$perf_pid" "$work/perf.data" "$out/proxy-perf.txt" 1
  echo "perf profile of the edge: $out/proxy-perf.txt"
fi
