#!/usr/bin/env bash
# Every benchmark, one after the other, then the tables and the latency plot of
# docs/performance.md rewritten from their JSON (scripts/bench/render.py):
#   edge        webhook ingestion against pgbench and the Node peer (scripts/bench/edge.sh)
#   latency     open-loop latency against the offered rate (scripts/bench/latency.sh)
#   latency-tmpfs  the same with Postgres's data on tmpfs: a diagnostic of the edge's own tail
#   proxy       the proxy against nginx and HAProxy (scripts/bench/proxy.sh)
#   reconciler  windows of 10k, 100k and 1M events with 1 % missing (scripts/bench/reconciler.sh)
#   attack      the edge's resource bounds under attack (scripts/bench/attack.sh)
#   orphans     orphan adoption against unclaimed orphans (tests/tools/src/bin/orphanbench.rs)
#   tls         what HTTPS and a database over TLS cost the ingestion (scripts/bench/tls.sh)
#   notify      order notifications: ingestion with and without the outbox, delivery rate and
#               latency (scripts/bench/notify.sh)
# Not run here: scripts/bench/ab.sh, which compares builds or settings of the edge side by side in
# alternating rounds (a change of 10 % is invisible between two separate runs on this machine),
# and scripts/bench/instructions.sh, which counts the edge's instructions per proxied request and
# per webhook event under valgrind (a change of a few hundred instructions is visible in one run).
# Each writes target/bench/<name>.json; a benchmark that fails stops the run, and the doc keeps
# its previous tables for the sections not rewritten. About 50 minutes on 2 cores; run it on an
# otherwise idle machine (the benchmarks share its cores with Postgres and their load generators).
#
# Env: BENCH_ONLY (a subset, e.g. "edge proxy"; default: all nine). Each script's own settings
#      (BENCH_ROUNDS, BENCH_REQUESTS, BENCH_SIZES, ...) pass through, and so do BENCH_CLIENT_CPUS,
#      BENCH_SERVER_CPUS and BENCH_PG_CPUS (cores of their own for the load generators, the
#      servers and Postgres, where edge.sh, latency.sh and proxy.sh start them; the tables' header
#      then names the placement).
. "$(dirname "$0")/lib.sh"
only=${BENCH_ONLY:-$(python3 scripts/bench/render.py --sections)}
mkdir -p target/bench
started=$(date +%s)
for name in $only; do
  echo "######## $name"
  rm -f "target/bench/$name.json"
  case $name in
    orphans)
      cargo build --release --locked -q -p tools --bin orphanbench
      ./target/release/orphanbench --out target/bench/orphans.json ;;
    latency-tmpfs) BENCH_PG_TMPFS=1 scripts/bench/latency.sh ;;
    reconciler) BENCH_SIZES=${BENCH_SIZES:-10000 100000 1000000} scripts/bench/reconciler.sh ;;
    edge | latency | proxy | attack | tls | notify) "scripts/bench/$name.sh" ;;
    *) echo "unknown benchmark: $name ($(python3 scripts/bench/render.py --sections))" >&2; exit 2 ;;
  esac
done
echo "######## docs/performance.md"
python3 scripts/bench/render.py $only
echo "all benchmarks done in $(( ($(date +%s) - started) / 60 )) min"
