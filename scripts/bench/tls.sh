#!/usr/bin/env bash
# What TLS costs the webhook ingestion, in one run on this machine: the release edge under the load
# generator (32 connections, unique signed events), alternating in rounds between
#   plain   the edge's public listener over HTTP, its database over loopback TCP without TLS;
#   pg-tls  the same, the database over TLS (sslmode=verify-full against the run's own CA);
#   https   the public listener over HTTPS (the load generator trusting the run's CA), the database
#           without TLS.
# Postgres is a throwaway cluster with ssl=on, listening on loopback TCP. Each ratio is taken within
# a round (this machine's speed drifts); the medians are printed and written to
# target/bench/tls.json.
#
# Env: BENCH_REQUESTS (20000 per run), BENCH_ROUNDS (3).
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false
need_commands openssl:openssl
requests=${BENCH_REQUESTS:-20000}
rounds=${BENCH_ROUNDS:-3}
out=target/bench
mkdir -p "$out"
pg_bin=$(pg_bin_dir)

echo "==> building release binaries"
cargo build --release --locked -q -p edge -p tools --bin edge --bin loadgen
use_scratch_dir edge-tls-bench
start_throwaway_pg "$work"
warm_wal "$work"

echo "==> a CA, the database's and the edge's certificates for localhost (openssl)"
certs=$work/certs
mkdir -p "$certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$certs/ca.key" \
  -out "$certs/ca.crt" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
for name in server edge; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$certs/$name.key" \
    -out "$certs/$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\n' >"$certs/$name.ext"
  openssl x509 -req -in "$certs/$name.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/$name.ext" -out "$certs/$name.crt" 2>/dev/null
done
chmod 0600 "$certs"/*.key
pg_owned_dir "$certs"
pg_port=$(free_port)
q=("$pg_bin/psql" -h "$work" -U postgres -v ON_ERROR_STOP=1 -qAt -d bench)
"${q[@]}" -c "ALTER SYSTEM SET ssl = on" -c "ALTER SYSTEM SET ssl_cert_file = '$certs/server.crt'" \
  -c "ALTER SYSTEM SET ssl_key_file = '$certs/server.key'" -c "ALTER SYSTEM SET listen_addresses = '127.0.0.1'" \
  -c "ALTER SYSTEM SET port = $pg_port" >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/data" -w restart -o "-k $work" >/dev/null
q=("$pg_bin/psql" -h "$work" -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 -qAt -d bench)
tcp="postgres://postgres@localhost:$pg_port/bench"
DATABASE_URL="$tcp?sslmode=disable" ./target/release/edge migrate >/dev/null
secret=whsec_tls_bench_0123456789
pm=$(head -n 1 "$work/data/postmaster.pid")

# run NAME ROUND: one loadgen run against an edge set up as NAME.
run() {
  local name=$1 round=$2 port admin db_url lg=() pid
  port=$(free_port); admin=$(free_port)
  db_url="$tcp?sslmode=disable"
  local env=(EDGE_LISTEN=127.0.0.1:$port EDGE_ADMIN_LISTEN=127.0.0.1:$admin STRIPE_WEBHOOK_SECRET=$secret LOG_FORMAT=json)
  case $name in
    pg-tls) db_url="$tcp?sslmode=verify-full&sslrootcert=$certs/ca.crt" ;;
    https) env+=(EDGE_TLS_CERT_FILE=$certs/edge.crt EDGE_TLS_KEY_FILE=$certs/edge.key); lg=(--tls-ca "$certs/ca.crt") ;;
  esac
  env "${env[@]}" DATABASE_URL="$db_url" ./target/release/edge serve >"$work/edge-$name.log" 2>&1 &
  pid=$!
  scratch_pids+=("$pid")
  wait_for_url "http://127.0.0.1:$admin/ready"
  DATABASE_URL="$tcp?sslmode=disable" ./target/release/loadgen --addr "127.0.0.1:$port" \
    --secret "$secret" --connections 32 --requests "$requests" --label "${name/-/_}_$round" \
    --app-pid "$pid" --postmaster-pid "$pm" --json "$work/$name-$round.json" "${lg[@]}" | tail -n 1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$rounds"); do
  echo "==> round $round"
  for name in plain pg-tls https; do run "$name" "$round"; done
done

python3 - "$work" "$rounds" "$out/tls.json" <<'PY'
import json, statistics, sys
work, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["plain", "pg-tls", "https"]
runs = {n: [json.load(open(f"{work}/{n}-{r}.json")) for r in range(1, rounds + 1)] for n in names}
result = {"rounds": rounds, "configs": {}}
for n in names:
    rs = runs[n]
    result["configs"][n] = {
        "rps": statistics.median(r["rps"] for r in rs),
        "edge_cpu_us": statistics.median(r["app_cpu_us_per_req"] for r in rs),
        "pg_cpu_us": statistics.median(r["pg_cpu_us_per_req"] for r in rs),
        "p99_ms": statistics.median(r["p99_ms"] for r in rs),
        "ok": all(r["rows_checked"] for r in rs),
    }
    if n != "plain":
        result["configs"][n]["rps_vs_plain"] = statistics.median(
            runs[n][i]["rps"] / runs["plain"][i]["rps"] for i in range(rounds))
for n, c in result["configs"].items():
    print(f"{n:7} {c['rps']:7.0f} req/s  edge {c['edge_cpu_us']:5.1f} us/event  "
          f"postgres {c['pg_cpu_us']:5.1f} us/event  p99 {c['p99_ms']:.2f} ms"
          + (f"  {c['rps_vs_plain']:.2f}x plain" if "rps_vs_plain" in c else ""))
json.dump(result, open(out, "w"), indent=2)
PY
