#!/usr/bin/env bash
# Paired A/B of webhook ingestion: several edges (builds, or settings of one build) side by side
# on one Postgres, measured in alternating short rounds. This machine's speed drifts by 30 %
# between minutes, so a change of 10 % is invisible in two separate runs; here every round runs
# each variant once, back to back, and the result is the median over the rounds of each variant's
# difference to the first one in the same round.
#
# Usage: scripts/bench/ab.sh NAME=WHAT[:ENV=VALUE,...] NAME=WHAT[:ENV=VALUE,...] ...
#   WHAT is `.` (the working tree's release build), a git revision (built in a temporary worktree
#   under target/bench/ab/), or the path of an edge binary. The settings are passed to that edge.
#   The first variant is the reference. Example:
#     scripts/bench/ab.sh before=main~1 after=. one-worker=.:TOKIO_WORKER_THREADS=1
#
# Each round runs the load generator (unique signed checkout.session.completed events, closed
# loop) against each edge in turn, starting with the next one each round, and reads from /proc
# the CPU that the edge and Postgres spend per event while the clock runs. The ledger is checked
# after every run. All edges share one database, migrated by the working tree's build. Compare a
# build with itself (`a=. b=HEAD` on a clean tree) to see the noise left.
#
# Env: BENCH_ROUNDS (8), BENCH_REQUESTS (20000 per run), BENCH_CONNECTIONS (32), EDGE_LOG (info),
#      BENCH_PG_TMPFS=1 (Postgres's data directory on /dev/shm: a WAL flush that costs nothing,
#      less noise), BENCH_CLIENT_CPUS / BENCH_SERVER_CPUS / BENCH_PG_CPUS (taskset lists: see
#      scripts/lib.sh). Writes target/bench/ab.json.
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false

[ $# -ge 2 ] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
rounds=${BENCH_ROUNDS:-8}
requests=${BENCH_REQUESTS:-20000}
connections=${BENCH_CONNECTIONS:-32}
out=target/bench
ab=$PWD/$out/ab
mkdir -p "$ab"
[ "${BENCH_PG_TMPFS:-}" = 1 ] && export TMPDIR=/dev/shm

echo "==> building the working tree's release binaries"
cargo build --release --locked -q -p edge -p tools --bin edge --bin loadgen

# Prints the edge binary of WHAT, building a git revision first.
edge_binary() {
  local what=$1 sha tree
  if [ "$what" = . ]; then echo "$PWD/target/release/edge"; return; fi
  if [ -x "$what" ] && [ -f "$what" ]; then realpath "$what"; return; fi
  sha=$(git rev-parse --verify --quiet "$what^{commit}") || { echo "error: $what is neither . nor a binary nor a revision" >&2; return 1; }
  if [ ! -x "$ab/edge-$sha" ]; then
    echo "==> building $what ($sha) in a temporary worktree" >&2
    tree=$ab/src-$sha
    rm -rf "$tree"; git worktree prune
    git worktree add --detach --quiet "$tree" "$sha" >&2
    (cd "$tree" && CARGO_TARGET_DIR=$ab/target cargo build --release --locked -q -p edge --bin edge >&2)
    cp "$ab/target/release/edge" "$ab/edge-$sha"
    git worktree remove --force "$tree"
  fi
  echo "$ab/edge-$sha"
}

names=(); bins=(); settings=()
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; what=${rest%%:*}; env=
  [ "$rest" != "$what" ] && env=${rest#*:}
  names+=("$name"); bins+=("$(edge_binary "$what")"); settings+=("$env")
done

use_scratch_dir edge-ab
echo "==> starting a throwaway PostgreSQL${BENCH_PG_TMPFS:+ on tmpfs}"
print_placement
start_throwaway_pg "$work"
warm_wal "$work"
./target/release/edge migrate >/dev/null
postmaster=$(head -n 1 "$work/data/postmaster.pid")
secret=whsec_ab_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

ports=(); pids=()
for i in "${!names[@]}"; do
  port=$(free_port); admin=$(free_port)
  # shellcheck disable=SC2046 # the settings are words on purpose: ENV=VALUE pairs
  "${on_server_cpus[@]}" env RUST_LOG="${EDGE_LOG:-info}" $(echo "${settings[$i]}" | tr ',' ' ') EDGE_LISTEN=127.0.0.1:$port \
    EDGE_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_WEBHOOK_SECRET=$secret "${bins[$i]}" serve \
    >"$work/edge-${names[$i]}.log" 2>&1 &
  pids+=($!); scratch_pids+=($!); ports+=("$port")
  wait_for_url "http://127.0.0.1:$admin/ready"
  echo "    ${names[$i]}: ${bins[$i]} ${settings[$i]}"
done

: >"$work/runs.jsonl"
count=${#names[@]}
for r in $(seq 1 "$rounds"); do
  # Each round starts with the next variant: what a run leaves behind (autovacuum of its rows, a
  # checkpoint) falls on every variant alike.
  for k in $(seq 0 $((count - 1))); do
    i=$(( (k + r - 1) % count ))
    "${on_client_cpus[@]}" ./target/release/loadgen --addr "127.0.0.1:${ports[$i]}" --secret "$secret" \
      --database-url "$DATABASE_URL" --app-pid "${pids[$i]}" --postmaster-pid "$postmaster" \
      --connections "$connections" --requests "$requests" --label "v${i}_r$r" \
      --json "$work/run.json" >"$work/loadgen.txt" || {
      echo "error: the run of ${names[$i]} failed its ledger check:" >&2
      cat "$work/loadgen.txt" >&2
      grep -v '"level":"INFO"' "$work/edge-${names[$i]}.log" | tail -n 20 >&2
      exit 1
    }
    # The run's line for the summary (appended to runs.jsonl), and one for the reader.
    python3 - "$work/run.json" "${names[$i]}" "$r" "$work/runs.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
run = {"variant": sys.argv[2], "round": int(sys.argv[3]), "rps": r["rps"], "p99_ms": r["p99_ms"],
       "edge_us": r["app_cpu_us_per_req"], "pg_us": r["pg_cpu_us_per_req"]}
print(json.dumps(run), file=open(sys.argv[4], "a"))
print(f"    round {run['round']} {run['variant']:<12} {run['rps']:6.0f} req/s  "
      f"edge {run['edge_us']:5.1f} µs/event  Postgres {run['pg_us']:5.1f} µs/event")
PY
  done
done

python3 - "$work/runs.jsonl" "$out/ab.json" "$connections" "${BENCH_PG_TMPFS:-0}" "${names[@]}" <<'PY'
import json, statistics, sys, datetime, os, platform
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out, connections, tmpfs, names = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
at = {(r["variant"], r["round"]): r for r in runs}
rounds = sorted({r["round"] for r in runs})
ref = names[0]
med = statistics.median
summary = {}
for v in names:
    mine = [at[(v, k)] for k in rounds]
    s = {"edge_us": med(r["edge_us"] for r in mine), "pg_us": med(r["pg_us"] for r in mine),
         "rps": med(r["rps"] for r in mine)}
    if v != ref:
        s["edge_us_minus_ref"] = med(at[(v, k)]["edge_us"] - at[(ref, k)]["edge_us"] for k in rounds)
        s["pg_us_minus_ref"] = med(at[(v, k)]["pg_us"] - at[(ref, k)]["pg_us"] for k in rounds)
        s["rps_over_ref"] = med(at[(v, k)]["rps"] / at[(ref, k)]["rps"] for k in rounds)
        s["edge_lower_in_rounds"] = sum(at[(v, k)]["edge_us"] < at[(ref, k)]["edge_us"] for k in rounds)
    summary[v] = s
json.dump({"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
           "connections": connections, "postgres_on_tmpfs": tmpfs, "reference": ref,
           "runs": runs, "summary": summary}, open(out, "w"), indent=2)
print(f"\n| variant ({len(rounds)} rounds, {connections} connections{', Postgres on tmpfs' if tmpfs else ''}) "
      "| edge µs/event | Postgres µs/event | req/s | edge µs vs " + ref + " (median of pairs) "
      "| rounds where the edge used less CPU | req/s vs " + ref + " |")
print("|---|---:|---:|---:|---:|---:|---:|")
for v in names:
    s = summary[v]
    if v == ref:
        print(f"| {v} | {s['edge_us']:.1f} | {s['pg_us']:.1f} | {s['rps']:.0f} | | | |")
    else:
        print(f"| {v} | {s['edge_us']:.1f} | {s['pg_us']:.1f} | {s['rps']:.0f} | {s['edge_us_minus_ref']:+.1f} "
              f"| {s['edge_lower_in_rounds']} of {len(rounds)} | {s['rps_over_ref']:.2f}× |")
print(f"\nwritten: {out}")
PY
