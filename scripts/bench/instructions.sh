#!/usr/bin/env bash
# Instructions per request, counted rather than timed: each server runs under valgrind's
# callgrind, and the instructions that all its threads execute while a fixed load runs are divided
# by the requests answered. Unlike CPU time on a shared machine (whose speed drifts by 30 % between
# minutes), the count moves by about 1 % between runs, so it resolves a change of a few hundred
# instructions in one run; it sees neither the kernel nor cache misses, so it complements the timed
# benchmarks rather than replacing them.
#
# Targets, each alone under callgrind (valgrind runs one thread at a time), after a warm-up:
#   - proxy: the release edge (one serving thread) and hyper-floor (tests/tools/src/bin/hyper-floor.rs,
#     the bare hyper proxy) in front of fake-app, under `wrk -c32`: instructions per proxied request;
#   - webhook: the release edge under `loadgen` (32 connections, unique signed events, the ledger
#     checked): instructions per event, the group-commit writer and tokio-postgres included.
# BENCH_EDGE_BASE=PATH adds another edge binary (an older build) as the target `base`.
# BENCH_TOP=N prints the N functions where the edge spends the most instructions per request
# beyond the floor (or beyond the base, when there is one), and per webhook event (beyond the
# base, or in all).
#
# Env: BENCH_SECONDS (each proxy run, 8), BENCH_EVENTS (webhook events, 3000), BENCH_EDGE_BASE,
#      BENCH_TOP (0), BENCH_ONLY (proxy|webhook: one half only), BENCH_KEEP=DIR (keeps each
#      counted window there as TARGET.KIND.callgrind, with its request count in TARGET.KIND.requests,
#      for `callgrind_annotate --tree=caller` and the like), BENCH_PATH (the proxied path, `/`;
#      `/node` for the answer Node's HTTP server would give: see scripts/bench/proxy.sh).
# Installs valgrind and wrk when missing. Writes target/bench/instructions.json.
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false

seconds=${BENCH_SECONDS:-8}
events=${BENCH_EVENTS:-3000}
top=${BENCH_TOP:-0}
only=${BENCH_ONLY:-}
path=${BENCH_PATH:-/}
out=target/bench
mkdir -p "$out"
need_commands valgrind:valgrind wrk:wrk
use_scratch_dir edge-instructions-bench

echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tools --bin edge --bin fake-app --bin hyper-floor --bin loadgen
echo "==> starting a throwaway PostgreSQL"
start_throwaway_pg "$work"
./target/release/edge migrate >/dev/null
secret=whsec_instructions_bench
app=$(free_port)
./target/release/fake-app --port "$app" 2>"$work/app.log" &
scratch_pids+=($!)

# Runs "$@" under callgrind with its counts written to $work/$name.out*; its pid in started_pid.
under_callgrind() {
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" "$@" >"$work/$name.log" 2>"$work/$name.valgrind.log" &
  started_pid=$!
  scratch_pids+=("$started_pid")
}

# Starts the edge binary $2 as target $1 under callgrind; its public port in edge_port.
start_edge() {
  local name=$1 bin=$2 admin
  edge_port=$(free_port); admin=$(free_port)
  RUST_LOG=warn EDGE_SERVE_THREADS=${3:-} EDGE_LISTEN=127.0.0.1:$edge_port EDGE_ADMIN_LISTEN=127.0.0.1:$admin \
    UPSTREAM_URL=http://127.0.0.1:$app STRIPE_WEBHOOK_SECRET=$secret \
    under_callgrind "$name" "$bin" serve
  wait_for_callgrind "http://127.0.0.1:$admin/ready"
}

# Like wait_for_url, with the patience a server under valgrind needs to start.
wait_for_callgrind() {
  for _ in $(seq 1 600); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timed out waiting for $1 (under valgrind)" >&2
  return 1
}

stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Instructions spent in SHA-256's block function in the window $1. valgrind does not emulate the
# SHA extensions, so under it the sha2 crate takes its portable code, where the hardware path that
# runs natively costs a small fraction of that: a count is also given without it.
sha256_of() {
  callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" \
    | awk '/sha2::sha256::.*compress/ { gsub(",", "", $1); n += $1 } END { print n + 0 }'
}

results=()
record() { # target kind instructions requests [instructions in SHA-256]
  local per sha=${5:-0} rest
  per=$(python3 -c "print(round($3 / $4))")
  rest=$(python3 -c "print(round(($3 - $sha) / $4))")
  printf '%-8s %-8s %12s instructions / %6s requests = %7s per request, %7s without SHA-256\n' "$1" "$2" "$3" "$4" "$per" "$rest"
  if [ -n "${BENCH_KEEP:-}" ]; then
    mkdir -p "$BENCH_KEEP"
    cp "$work/$1.$2.window" "$BENCH_KEEP/$1.$2.callgrind"
    echo "$4" >"$BENCH_KEEP/$1.$2.requests"
  fi
  results+=("{\"target\":\"$1\",\"kind\":\"$2\",\"instructions\":$3,\"requests\":$4,\"per_request\":$per,\"per_request_without_sha256\":$rest}")
}

if [ "$only" != webhook ]; then
  echo "==> proxy: wrk -c32 for ${seconds}s against each target under callgrind"
  targets=(edge floor)
  [ -z "${BENCH_EDGE_BASE:-}" ] || targets+=(base)
  for name in "${targets[@]}"; do
    case $name in
      edge) start_edge edge ./target/release/edge 1; port=$edge_port ;;
      base) start_edge base "$BENCH_EDGE_BASE" 1; port=$edge_port ;;
      floor)
        port=$(free_port)
        under_callgrind floor ./target/release/hyper-floor --listen "127.0.0.1:$port" --upstream "127.0.0.1:$app" --threads 1
        wait_for_callgrind "http://127.0.0.1:$port/"
        ;;
    esac
    pid=$started_pid
    wrk -t1 -c32 -d3s "http://127.0.0.1:$port$path" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    wrk -t1 -c32 -d"${seconds}s" "http://127.0.0.1:$port$path" >"$work/$name.wrk"
    callgrind_control -d "$pid" >/dev/null 2>&1
    dump=$(ls -t "$work/$name.out".* | head -n 1)
    cp "$dump" "$work/$name.proxy.window"
    total=$(sed -n 's/^summary: //p' "$dump" | head -n 1)
    reqs=$(grep -o '[0-9]* requests in' "$work/$name.wrk" | awk '{print $1}')
    record "$name" proxy "$total" "$reqs"
    stop "$pid"
  done
fi

if [ "$only" != proxy ]; then
  echo "==> webhook: loadgen, $events unique signed events over 32 connections, against each edge under callgrind"
  targets=(edge)
  [ -z "${BENCH_EDGE_BASE:-}" ] || targets+=(base)
  for name in "${targets[@]}"; do
    case $name in
      edge) start_edge edge-webhook ./target/release/edge ;;
      base) start_edge base-webhook "$BENCH_EDGE_BASE" ;;
    esac
    pid=$started_pid
    ./target/release/loadgen --addr "127.0.0.1:$edge_port" --secret "$secret" --requests 300 \
      --label "warm$name" >"$work/loadgen.txt"
    callgrind_control -z "$pid" >/dev/null 2>&1
    # The orders are created and the ledger checked through the database: only the events reach
    # the edge while it is counted.
    ./target/release/loadgen --addr "127.0.0.1:$edge_port" --secret "$secret" --requests "$events" \
      --label "counted$name" >"$work/loadgen.txt"
    callgrind_control -d "$pid" >/dev/null 2>&1
    dump=$(ls -t "$work/$name-webhook.out".* | head -n 1)
    cp "$dump" "$work/$name.webhook.window"
    total=$(sed -n 's/^summary: //p' "$dump" | head -n 1)
    record "$name" webhook "$total" "$events" "$(sha256_of "$work/$name.webhook.window")"
    stop "$pid"
  done
fi

# The functions where target $1 spends the most instructions per request beyond target $2.
top_functions() {
  python3 - "$1" "$2" "$top" <<'PY'
import re, subprocess, sys
def per_function(window, requests):
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", window],
                          capture_output=True, text=True, check=True).stdout
    costs = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)(?: \[[^\]]*\])?$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"^.*?\.(?:rs|c|S|h):", "", m.group(2))
        if "sha2::sha256" in name and "compress" in name:
            continue  # the portable code that valgrind makes it take (see sha256_of)
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", "")) / requests
    return costs
a_window, a_reqs = sys.argv[1].split("@")
a = per_function(a_window, int(a_reqs))
b = {}
if sys.argv[2]:
    b_window, b_reqs = sys.argv[2].split("@")
    b = per_function(b_window, int(b_reqs))
# Functions that enclose all the others (the threads' entry points) are not a cost of their own.
rows = sorted(((a.get(k, 0) - b.get(k, 0), k) for k in set(a) | set(b) if a.get(k, 0) < 0.9 * max(a.values())), reverse=True)
for diff, name in rows[: int(sys.argv[3])]:
    print(f"{diff:+9.0f} {a.get(name, 0):9.0f} {b.get(name, 0):9.0f}  {name[:140]}")
PY
}

if [ "$top" -gt 0 ] && [ "$only" != webhook ]; then
  other=floor
  [ -z "${BENCH_EDGE_BASE:-}" ] || other=base
  reqs_of() { grep -o '[0-9]* requests in' "$work/$1.wrk" | awk '{print $1}'; }
  echo "==> where the edge spends more per proxied request than $other (instructions: difference, edge, $other)"
  top_functions "$work/edge.proxy.window@$(reqs_of edge)" "$work/$other.proxy.window@$(reqs_of "$other")"
fi

if [ "$top" -gt 0 ] && [ "$only" != proxy ]; then
  if [ -n "${BENCH_EDGE_BASE:-}" ]; then
    echo "==> where the edge spends more per webhook event than base (instructions: difference, edge, base)"
    top_functions "$work/edge.webhook.window@$events" "$work/base.webhook.window@$events"
  else
    echo "==> where the edge spends its instructions per webhook event"
    top_functions "$work/edge.webhook.window@$events" ""
  fi
fi

printf '{"measured_at":"%s","seconds":%s,"events":%s,"results":[%s]}\n' \
  "$(date -u +%FT%TZ)" "$seconds" "$events" "$(IFS=,; echo "${results[*]}")" >"$out/instructions.json"
echo "wrote $out/instructions.json"
