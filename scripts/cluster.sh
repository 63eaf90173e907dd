#!/usr/bin/env bash
# The production topology on 127.0.0.1, one command: a PostgreSQL primary and a streaming standby,
# HAProxy in front of three edges (health checks on /ready), two reconcilers, the Stripe simulator,
# and a Prometheus scraping everything with the alert rules loaded (scripts/cluster/topology.sh). Prints the
# URLs, then runs until Ctrl-C, SIGINT or SIGTERM, which stop everything it started.
#
# Env: TOPO_EDGES (3), TOPO_RECONCILERS (2).
. "$(dirname "$0")/lib.sh"
. scripts/cluster/topology.sh

echo "==> building (release)"
cargo build --release --locked -q -p edge -p reconciler -p sim --bin edge --bin reconciler --bin stripe-sim
use_scratch_dir edge-cluster
cleanup() { topo_stop; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
topo_start

edges=""; for i in $(seq 1 "$topo_edges"); do edges+="    edge-$i        public 127.0.0.1:${edge_ports[$((i - 1))]}, admin http://127.0.0.1:${edge_admins[$((i - 1))]}/ready"$'\n'; done
recs=""; for i in $(seq 1 "$topo_reconcilers"); do recs+="    reconciler-$i  admin http://127.0.0.1:${rec_admins[$((i - 1))]}/ready"$'\n'; done
cat <<EOT

  The topology is running.

  webhooks     http://127.0.0.1:$lb_port/stripe/webhook   (HAProxy; stats http://127.0.0.1:$lb_stats/stats)
$edges$recs  database     $topo_db_url
               primary 127.0.0.1:$pg1_port, standby 127.0.0.1:$pg2_port (streaming)
  stripe sim   http://127.0.0.1:$sim_port  (key $topo_key)
  prometheus   http://127.0.0.1:$prom_port  (alerts: http://127.0.0.1:$prom_port/alerts)
  secret       $topo_secret
  logs         $work

  Drills against this topology: scripts/drill.sh (starts its own). Ctrl-C stops everything.
EOT
while true; do sleep 3600 & wait $!; done
