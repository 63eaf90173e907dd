#!/usr/bin/env bash
# Proxy benchmark, in one run: the same client (wrk, 2 threads, 32 keep-alive connections, small
# GETs) against the same upstream app (tests/tools/src/bin/fake-app.rs) directly, through the release
# edge, through nginx (Debian nginx-light: a worker per core, a keep-alive upstream pool,
# X-Forwarded-For and a request id set like ours) and through HAProxy (a thread per core, `http-reuse always`,
# `option forwardfor`, a unique-id header), alternating in rounds. Reports req/s, p99 and each
# proxy's CPU µs per request (medians of the rounds) and the paired ratios. Then 100 MB streamed
# down and up through the edge while its peak RSS is read (tests/tools/src/bin/proxybench.rs). Installs
# wrk and nginx-light when missing (HAProxy too). Writes target/bench/proxy.json.
#
# The edge runs as a front door that mostly proxies would: its public listener on threads of its
# own, one per core (EDGE_SERVE_THREADS).
#
# Env: BENCH_ROUNDS (3), BENCH_SECONDS (each wrk run, 10), BENCH_STREAM_MB (100),
#      BENCH_SERVE_THREADS (the edge's EDGE_SERVE_THREADS; default: the servers' cores; 0: the shared
#      runtime), BENCH_CLIENT_CPUS / BENCH_SERVER_CPUS / BENCH_PG_CPUS (taskset lists: see
#      scripts/lib.sh),
#      BENCH_PERF=1 (profile the edge with `perf record -e cpu-clock` during its first round;
#      report in target/bench/proxy-perf.txt),
#      BENCH_EDGE_BASE=PATH (another edge binary, say an older build, run beside this one as the
#      target `base` in every round: a paired comparison of the two builds, edge/base).
#      BENCH_ONLY_EDGES=1 (with BENCH_EDGE_BASE: skip nginx and HAProxy).
#      BENCH_FLOOR=1 (also the target `floor`: tests/tools/src/bin/hyper-floor.rs, a bare proxy of
#      hyper's HTTP/1 server and client on the edge's threads layout, the least that the edge's
#      stack can spend per request; reports edge/floor and floor/nginx, floor/haproxy).
#      BENCH_PATH (the path wrk asks for, `/`: fake-app's answer names a header of its own in
#      `Connection`, which the edge removes and nginx forwards; `/node`: the hop-by-hop headers
#      Node's HTTP server sends, which every proxy removes).
. "$(dirname "$0")/../lib.sh"
export STRIPE_EXPECT_LIVEMODE=false

rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-10}
path=${BENCH_PATH:-/}
out=target/bench
mkdir -p "$out"
need_commands wrk:wrk nginx:nginx-light haproxy:haproxy
use_scratch_dir edge-proxy-bench

echo "==> building release binaries"
print_placement
cargo build --release --locked -q -p edge -p tools --bin edge --bin proxybench --bin fake-app --bin hyper-floor
echo "==> starting a throwaway PostgreSQL (the edge checks its schema at start-up)"
start_throwaway_pg "$work"
./target/release/edge migrate >/dev/null

app=$(free_port); port=$(free_port); admin=$(free_port); nginx_port=$(free_port); haproxy_port=$(free_port)
# The proxies' cores: the edge's serving threads, nginx's workers and HAProxy's threads, one each.
cores=$("${on_server_cpus[@]}" nproc)
"${on_server_cpus[@]}" ./target/release/fake-app --port "$app" 2>"$work/app.log" &
app_pid=$!
scratch_pids+=("$app_pid")
# Starts the edge binary $1 in front of the app, public on port $2 and admin on $3, logging to
# $work/$4.log; its pid in started_pid.
start_edge() {
  RUST_LOG=warn EDGE_SERVE_THREADS=${BENCH_SERVE_THREADS:-$cores} EDGE_LISTEN=127.0.0.1:$2 EDGE_ADMIN_LISTEN=127.0.0.1:$3 UPSTREAM_URL=http://127.0.0.1:$app \
    STRIPE_WEBHOOK_SECRET=whsec_proxy_bench "${on_server_cpus[@]}" "$1" serve >"$work/$4.log" 2>&1 &
  started_pid=$!
  scratch_pids+=("$started_pid")
}
start_edge ./target/release/edge "$port" "$admin" edge
edge_pid=$started_pid
base_port=; base_pid=
if [ -n "${BENCH_EDGE_BASE:-}" ]; then
  base_port=$(free_port); base_admin=$(free_port)
  start_edge "$BENCH_EDGE_BASE" "$base_port" "$base_admin" base
  base_pid=$started_pid
  wait_for_url "http://127.0.0.1:$base_admin/ready"
fi
floor_port=; floor_pid=
if [ "${BENCH_FLOOR:-}" = 1 ]; then
  floor_port=$(free_port)
  "${on_server_cpus[@]}" ./target/release/hyper-floor --listen "127.0.0.1:$floor_port" --upstream "127.0.0.1:$app" \
    --threads "${BENCH_SERVE_THREADS:-$cores}" 2>"$work/floor.log" &
  floor_pid=$!
  scratch_pids+=("$floor_pid")
fi

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $cores;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app { server 127.0.0.1:$app; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
      add_header X-Request-Id \$request_id always;
    }
  }
}
EOF
"${on_server_cpus[@]}" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
scratch_pids+=("$nginx_pid")

cat >"$work/haproxy.cfg" <<EOF
global
  nbthread $cores
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend public
  bind 127.0.0.1:$haproxy_port
  unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
  http-request set-header X-Request-Id %[unique-id]
  http-after-response set-header X-Request-Id %[unique-id]
  default_backend app
backend app
  server app 127.0.0.1:$app
EOF
"${on_server_cpus[@]}" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
scratch_pids+=("$haproxy_pid")

wait_for_url "http://127.0.0.1:$admin/ready"
for p in "$app" "$nginx_port" "$haproxy_port" "$port" $floor_port; do wait_for_url "http://127.0.0.1:$p/"; done

# CPU ticks (user + system) of a process and its children (nginx's workers).
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}' || echo 0)))
  done
  echo "$t"
}
tck=$(getconf CLK_TCK)
# One wrk run against PORT; one JSON line: req/s, p99 ms, the proxy's CPU µs per request.
run() {
  local name=$1 target=$2 pid=$3 t0 t1 text
  t0=$( [ -n "$pid" ] && ticks "$pid" || echo 0)
  text=$("${on_client_cpus[@]}" wrk -t2 -c32 -d"${seconds}s" --latency "http://127.0.0.1:$target$path")
  echo "$text" >"$work/wrk-$name.txt"
  t1=$( [ -n "$pid" ] && ticks "$pid" || echo 0)
  python3 - "$name" "$t0" "$t1" "$tck" <<PY
import json, re, sys
text = """$text"""
name, t0, t1, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)", v)
    if not m:
        sys.exit(f"{name}: cannot read wrk's p99 {v!r}; its output is in $work/wrk-{name}.txt")
    n, unit = m.groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
# The latency distribution's line, not a "+/- Stdev" column that happens to read 99%.
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
cpu = (t1 - t0) * 1e6 / tck / total if t1 else None
print(json.dumps({"target": name, "rps": rps, "p99_ms": p99, "requests": total,
                  "cpu_us_per_req": cpu, "non_2xx": int(errors.group(1)) if errors else 0,
                  "socket_errors": sock.group(1) if sock else None}))
PY
}

if [ "${BENCH_PERF:-}" = 1 ]; then
  perf record -q -e cpu-clock -F 2000 -g -p "$edge_pid" -o "$work/perf.data" >/dev/null 2>&1 &
  perf_pid=$!
fi
: >"$work/runs.jsonl"
for r in $(seq 1 "$rounds"); do
  echo "==> round $r of $rounds: direct, edge${base_pid:+, base}${floor_pid:+, floor}, nginx, HAProxy ($seconds s each)"
  run direct "$app" "" | tee -a "$work/runs.jsonl"
  # The other build goes first every other round, so that neither always follows the same run.
  [ -n "$base_pid" ] && [ $((r % 2)) = 0 ] && run base "$base_port" "$base_pid" | tee -a "$work/runs.jsonl"
  run edge "$port" "$edge_pid" | tee -a "$work/runs.jsonl"
  if [ "${BENCH_PERF:-}" = 1 ] && [ "$r" = 1 ]; then
    perf_stop_and_report "$perf_pid" "$work/perf.data" "$out/proxy-perf.txt" 1
  fi
  [ -n "$base_pid" ] && [ $((r % 2)) = 1 ] && run base "$base_port" "$base_pid" | tee -a "$work/runs.jsonl"
  [ -n "$floor_pid" ] && run floor "$floor_port" "$floor_pid" | tee -a "$work/runs.jsonl"
  [ -n "$base_pid" ] && [ "${BENCH_ONLY_EDGES:-}" = 1 ] && continue
  run nginx "$nginx_port" "$nginx_pid" | tee -a "$work/runs.jsonl"
  run haproxy "$haproxy_port" "$haproxy_pid" | tee -a "$work/runs.jsonl"
done

echo "==> 100 MB streamed down and up through the edge (peak RSS)"
kill -TERM "$app_pid"; wait "$app_pid" 2>/dev/null || true
"${on_client_cpus[@]}" ./target/release/proxybench --edge "127.0.0.1:$port" --edge-pid "$edge_pid" --upstream-port "$app" \
  --rounds 1 --requests 2000 --stream-mb "${BENCH_STREAM_MB:-100}" --json "$work/stream.json" >/dev/null

python3 - "$work/runs.jsonl" "$work/stream.json" "$out/proxy.json" <<'PY'
import json, statistics, sys, datetime, os, platform
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
stream = json.load(open(sys.argv[2]))
targets = [t for t in ["direct", "edge", "base", "floor", "nginx", "haproxy"] if any(r["target"] == t for r in runs)]
by = {t: [r for r in runs if r["target"] == t] for t in targets}
med = lambda t, k: statistics.median(r[k] for r in by[t]) if by[t][0][k] is not None else None
rounds = len(by["edge"])
ratio = lambda a, b, k="rps": statistics.median(by[a][i][k] / by[b][i][k] for i in range(rounds))
summary = {t: {"rps": med(t, "rps"), "p99_ms": med(t, "p99_ms"), "cpu_us_per_req": med(t, "cpu_us_per_req")} for t in targets}
ratios = {f"edge/{t}": ratio("edge", t) for t in ["nginx", "haproxy", "direct", "base", "floor"] if t in by}
for t in ["nginx", "haproxy"]:
    if "floor" in by and t in by:
        ratios[f"floor/{t}"] = ratio("floor", t)
        ratios[f"floor/{t} cpu"] = ratio("floor", t, "cpu_us_per_req")
if "floor" in by:
    ratios["edge/floor cpu"] = ratio("edge", "floor", "cpu_us_per_req")
if "base" in by:
    # The CPU per request of this build over the other's, paired by round.
    ratios["edge/base cpu"] = ratio("edge", "base", "cpu_us_per_req")
result = {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
          "path": os.environ.get("BENCH_PATH", "/"),
          "rounds": runs, "summary": summary, "ratios": ratios, "stream": stream}
json.dump(result, open(sys.argv[3], "w"), indent=2)
print("\n| target (wrk, 32 connections) | req/s | p99 ms | proxy CPU µs per request |")
print("|---|---|---|---|")
for t in targets:
    s = summary[t]
    cpu = f"{s['cpu_us_per_req']:.1f}" if s["cpu_us_per_req"] is not None else "—"
    print(f"| {t} | {s['rps']:.0f} | {s['p99_ms']:.2f} | {cpu} |")
print("\n" + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()) + f" (medians of the {rounds} rounds' paired ratios)")
print(f"written: {sys.argv[3]}")
PY
