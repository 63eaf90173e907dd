#!/usr/bin/env bash
# The production topology on 127.0.0.1, as functions for scripts/cluster.sh and scripts/drill.sh
# (source it after scripts/lib.sh, with $work set): a PostgreSQL primary and a streaming standby
# (pg_basebackup -R), HAProxy in front of three edges with health checks on /ready, two
# reconcilers, the Stripe simulator, and a Prometheus scraping everything with the alert rules.
# Every process started is remembered in scratch_pids (or its pid file) and stopped by topo_stop.
#
# The edges and reconcilers reach the database with one multi-host URL
# (target_session_attrs=read-write): after a failover they find the promoted standby by
# themselves, without a restart.

topo_edges=${TOPO_EDGES:-3}
topo_reconcilers=${TOPO_RECONCILERS:-2}
topo_secret=whsec_topology_local_only_0123456789
topo_key=sk_test_topology_local_only
topo_token=topology-admin-token-local-only

# Picks every port once.
topo_ports() {
  pg1_port=$(free_port); pg2_port=$(free_port); lb_port=$(free_port); lb_stats=$(free_port)
  sim_port=$(free_port); prom_port=$(free_port)
  edge_ports=(); edge_admins=(); rec_admins=()
  for i in $(seq 1 "$topo_edges"); do edge_ports+=("$(free_port)"); edge_admins+=("$(free_port)"); done
  for i in $(seq 1 "$topo_reconcilers"); do rec_admins+=("$(free_port)"); done
  topo_db_url="postgres://postgres@127.0.0.1:$pg1_port,127.0.0.1:$pg2_port/stripe_edge?target_session_attrs=read-write&connect_timeout=2"
}

topo_pg_bin=$(pg_bin_dir)

# Starts the primary (async replication to one standby), creates the database and migrates it.
topo_start_primary() {
  pg_owned_dir "$work/pg1"
  as_pg "$topo_pg_bin/initdb" -D "$work/pg1/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  as_pg "$topo_pg_bin/pg_ctl" -D "$work/pg1/data" -l "$work/pg1/postgres.log" -w \
    -o "-p $pg1_port -k $work/pg1 -c listen_addresses=127.0.0.1 -c max_connections=200 -c wal_level=replica -c max_wal_senders=5 -c hot_standby=on" \
    start >/dev/null
  "$topo_pg_bin/createdb" -h 127.0.0.1 -p "$pg1_port" -U postgres stripe_edge
  DATABASE_URL=$topo_db_url ./target/release/edge migrate >/dev/null
}

# Clones the primary into a streaming standby (pg_basebackup -R) and starts it.
topo_start_standby() {
  pg_owned_dir "$work/pg2"
  as_pg "$topo_pg_bin/pg_basebackup" -h 127.0.0.1 -p "$pg1_port" -U postgres -D "$work/pg2/data" -R -X stream -c fast
  as_pg "$topo_pg_bin/pg_ctl" -D "$work/pg2/data" -l "$work/pg2/postgres.log" -w \
    -o "-p $pg2_port -k $work/pg2 -c listen_addresses=127.0.0.1 -c max_connections=200 -c hot_standby=on" \
    start >/dev/null
}

# Waits until the standby has replayed everything the primary has written.
topo_standby_caught_up() {
  local lsn
  lsn=$("$topo_pg_bin/psql" -h 127.0.0.1 -p "$pg1_port" -U postgres -qAt -c "SELECT pg_current_wal_lsn()" postgres)
  for _ in $(seq 1 300); do
    [ "$("$topo_pg_bin/psql" -h 127.0.0.1 -p "$pg2_port" -U postgres -qAt \
      -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn" postgres)" = t ] && return 0
    sleep 0.1
  done
  echo "standby did not catch up" >&2
  return 1
}

# Cuts the standby off the primary's WAL (its walreceiver is pointed at a closed port), so that
# what the primary acknowledges from now on exists nowhere else: asynchronous replication's
# window of loss, made wide enough to see.
topo_cut_replication() {
  local closed
  closed=$(free_port)
  "$topo_pg_bin/psql" -h 127.0.0.1 -p "$pg2_port" -U postgres -qAt -v ON_ERROR_STOP=1 \
    -c "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=$closed user=postgres'" \
    -c "SELECT pg_reload_conf()" postgres >/dev/null
}

# Stops the primary hard and promotes the standby.
topo_failover() {
  as_pg "$topo_pg_bin/pg_ctl" -D "$work/pg1/data" -m immediate stop >/dev/null
  as_pg "$topo_pg_bin/pg_ctl" -D "$work/pg2/data" -w promote >/dev/null
}

# Starts edge N (1-based) on its ports; its pid in edge_pids[N].
declare -A edge_pids
topo_start_edge() {
  local n=$1 i=$(($1 - 1))
  LOG_FORMAT=json EDGE_LISTEN=127.0.0.1:${edge_ports[$i]} EDGE_ADMIN_LISTEN=127.0.0.1:${edge_admins[$i]} \
    DATABASE_URL="$topo_db_url&application_name=edge-$n" STRIPE_WEBHOOK_SECRET=$topo_secret \
    STRIPE_EXPECT_LIVEMODE=false SHUTDOWN_GRACE_SECS=10 \
    ./target/release/edge serve >>"$work/edge-$n.log" 2>&1 &
  edge_pids[$n]=$!
  wait_for_url "http://127.0.0.1:${edge_admins[$i]}/ready"
}

# SIGTERM to edge N; returns once it has exited.
topo_stop_edge() {
  local n=$1
  kill -TERM "${edge_pids[$n]}" 2>/dev/null || true
  wait "${edge_pids[$n]}" 2>/dev/null || true
}

declare -A rec_pids
topo_start_reconciler() {
  local n=$1 i=$(($1 - 1))
  LOG_FORMAT=json DATABASE_URL="$topo_db_url&application_name=reconciler-$n" \
    STRIPE_API_KEY=$topo_key STRIPE_API_BASE=http://127.0.0.1:$sim_port STRIPE_EXPECT_LIVEMODE=false \
    RECONCILER_ADMIN_LISTEN=127.0.0.1:${rec_admins[$i]} RECONCILE_SCHEDULE="*/5 * * * * *" \
    RECONCILE_SETTLE=2s RECONCILE_LOOKBACK=1h RECONCILE_OVERLAP=2m ADMIN_TOKEN=$topo_token \
    ./target/release/reconciler run >>"$work/reconciler-$n.log" 2>&1 &
  rec_pids[$n]=$!
  wait_for_url "http://127.0.0.1:${rec_admins[$i]}/ready"
}

topo_start_sim() {
  ./target/release/stripe-sim --listen "127.0.0.1:$sim_port" --api-key "$topo_key" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  scratch_pids+=("$sim_pid")
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$sim_port/v1/events" && return 0
    sleep 0.1
  done
  echo "the simulator did not start" >&2
  return 1
}

# HAProxy: health checks on each edge's /ready (admin port) every 200 ms; a request that fails to
# connect, or whose connection dies before an answer, is retried on another edge (the webhook is
# idempotent, and the body is buffered so that it can be sent again).
topo_start_haproxy() {
  {
    cat <<EOF
global
  maxconn 4096
  nbthread 2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  option http-buffer-request
frontend webhooks
  bind 127.0.0.1:$lb_port
  default_backend edges
frontend stats
  bind 127.0.0.1:$lb_stats
  stats enable
  stats uri /stats
backend edges
  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
  default-server inter 200ms fall 1 rise 2
EOF
    for i in $(seq 1 "$topo_edges"); do
      echo "  server edge-$i 127.0.0.1:${edge_ports[$((i - 1))]} check port ${edge_admins[$((i - 1))]}"
    done
  } >"$work/haproxy.cfg"
  haproxy -c -q -f "$work/haproxy.cfg"
  haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
  haproxy_pid=$!
  scratch_pids+=("$haproxy_pid")
  wait_for_url "http://127.0.0.1:$lb_stats/stats"
}

# Waits until HAProxy reports edge N as UP (or DOWN with $2=DOWN).
topo_lb_sees() {
  local n=$1 want=${2:-UP}
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$lb_stats/stats;csv" 2>/dev/null \
      | awk -F, -v s="edge-$n" -v w="$want" '$1 == "edges" && $2 == s && $18 == w {found=1} END {exit !found}' \
      && return 0
    sleep 0.05
  done
  echo "HAProxy never saw edge-$n $want" >&2
  return 1
}

topo_start_prometheus() {
  local edges="" recs="" i
  for i in $(seq 0 $((topo_edges - 1))); do edges+="${edges:+,}127.0.0.1:${edge_admins[$i]}"; done
  for i in $(seq 0 $((topo_reconcilers - 1))); do recs+="${recs:+,}127.0.0.1:${rec_admins[$i]}"; done
  scripts/check/prometheus.sh "127.0.0.1:$prom_port" "$work/prom" dashboards/alerts.yml \
    "edge=$edges" "reconciler=$recs" >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  scratch_pids+=("$prom_pid")
  wait_for_url "http://127.0.0.1:$prom_port/-/ready"
}

# The whole topology, in dependency order.
topo_start() {
  need_commands haproxy:haproxy prometheus:prometheus promtool:prometheus
  topo_ports
  echo "==> PostgreSQL primary on 127.0.0.1:$pg1_port, standby on 127.0.0.1:$pg2_port"
  topo_start_primary
  topo_start_standby
  echo "==> Stripe simulator on 127.0.0.1:$sim_port"
  topo_start_sim
  echo "==> $topo_edges edges, HAProxy on 127.0.0.1:$lb_port"
  for i in $(seq 1 "$topo_edges"); do topo_start_edge "$i"; done
  topo_start_haproxy
  for i in $(seq 1 "$topo_edges"); do topo_lb_sees "$i" UP; done
  echo "==> $topo_reconcilers reconcilers"
  for i in $(seq 1 "$topo_reconcilers"); do topo_start_reconciler "$i"; done
  echo "==> Prometheus on 127.0.0.1:$prom_port"
  topo_start_prometheus
}

# Stops everything topo_start started (the edges and reconcilers first, Postgres last).
topo_stop() {
  local pid
  for pid in "${edge_pids[@]}" "${rec_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${edge_pids[@]}" "${rec_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pid in "${scratch_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${scratch_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scratch_pids=()
  for d in pg1 pg2; do
    [ -d "$work/$d/data" ] && as_pg "$topo_pg_bin/pg_ctl" -D "$work/$d/data" -m immediate stop >/dev/null 2>&1 || true
  done
}
