#!/usr/bin/env bash
# The one preamble of the project's scripts (each starts with `. "$(dirname "$0")/lib.sh"`, or
# `../lib.sh` from a folder of scripts/): strict mode, the repository root as the working
# directory, and the shared helpers: finding (or installing) PostgreSQL's server binaries and
# running them as the `postgres` user when we are root (initdb refuses root), Debian packages
# installed on demand, throwaway clusters, scratch directories, free ports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Prints the bin directory of the newest installed PostgreSQL server, installing Debian's
# `postgresql` package first when none is present and we are allowed to.
pg_bin_dir() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ] || [ ! -x "$dir/postgres" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "PostgreSQL server binaries missing: installing Debian's postgresql package" >&2
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
      dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
  fi
  if [ -z "$dir" ] || [ ! -x "$dir/postgres" ]; then
    echo "error: no PostgreSQL server found under /usr/lib/postgresql (install the postgresql package)" >&2
    return 1
  fi
  echo "$dir"
}

# Installs the Debian packages of the commands that are missing, given as COMMAND:PACKAGE pairs
# (`need_commands promtool:prometheus wrk:wrk`), and stops any service a package started: the
# scripts run their own, on loopback.
need_commands() {
  local missing=() pair pkg
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "==> installing Debian's ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if command -v systemctl >/dev/null; then
    for pkg in "${missing[@]}"; do systemctl disable --now "${pkg%-light}" >/dev/null 2>&1 || true; done
  fi
}

# Runs a command as the postgres user when we are root, else as ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# Where benchmarks put their processes, for a machine with cores to spare: BENCH_CLIENT_CPUS (the
# load generators: loadgen, wrk, pgbench), BENCH_SERVER_CPUS (the edge, nginx, HAProxy, the Node
# peer, the app behind the proxies) and BENCH_PG_CPUS (Postgres, which its backends inherit), each
# a `taskset -c` list such as `4-7`. Unset, the kernel places them. Each array is a command prefix
# that keeps the process's pid: "${on_client_cpus[@]}" ./target/release/loadgen ...
on_client_cpus=(); on_server_cpus=(); on_pg_cpus=()
[ -z "${BENCH_CLIENT_CPUS:-}" ] || on_client_cpus=(taskset -c "$BENCH_CLIENT_CPUS")
[ -z "${BENCH_SERVER_CPUS:-}" ] || on_server_cpus=(taskset -c "$BENCH_SERVER_CPUS")
[ -z "${BENCH_PG_CPUS:-}" ] || on_pg_cpus=(taskset -c "$BENCH_PG_CPUS")

# Prints the placement when one is asked for.
print_placement() {
  [ -n "${BENCH_CLIENT_CPUS:-}${BENCH_SERVER_CPUS:-}${BENCH_PG_CPUS:-}" ] || return 0
  echo "    CPUs: load generators ${BENCH_CLIENT_CPUS:-any}, servers ${BENCH_SERVER_CPUS:-any}, Postgres ${BENCH_PG_CPUS:-any}"
}

# Makes a directory that the postgres user can own when we are root.
pg_owned_dir() {
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$1"; fi
}

# Starts a throwaway PostgreSQL in DIR (Unix socket in DIR only, durable defaults) with a database
# `bench`, and exports DATABASE_URL for it. Stop it with stop_throwaway_pg DIR.
start_throwaway_pg() {
  local dir=$1 bin
  bin=$(pg_bin_dir)
  pg_owned_dir "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
  as_pg "${on_pg_cpus[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
    -o "-k $dir -c listen_addresses= -c max_connections=200 -c shared_buffers=256MB" start >/dev/null
  "$bin/psql" -h "$dir" -U postgres -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench" postgres
  export DATABASE_URL="host=$dir user=postgres dbname=bench"
}

# A server that has been running recycles its WAL segment files at each checkpoint. A fresh
# cluster has none, so every 16 MB of WAL it first writes and syncs a new zero-filled file while
# commits wait (`WALInitWrite`/`WALInitSync` waits, 10-50 ms stalls at benchmark write rates), in
# bursts that depend on where each run falls. So a benchmark brings the throwaway server in DIR to
# the steady state first: 1 GB of segments (max_wal_size, left at its default) is created, then
# recycled by a checkpoint and kept for the runs (min_wal_size raised to the same 1 GB). Everything
# else stays at Postgres's defaults, fsync and synchronous_commit included.
# BENCH_PG_WAL_GB=N keeps N GB instead (max_wal_size and min_wal_size both, N GB of segments made
# first): the setting docs/operations.md recommends for sustained ingestion, so that checkpoints
# come from checkpoint_timeout rather than from WAL volume.
warm_wal() {
  local dir=$1 bin gb=${BENCH_PG_WAL_GB:-1}
  bin=$(pg_bin_dir)
  local q=("$bin/psql" -h "$dir" -U postgres -v ON_ERROR_STOP=1 -qAt -d bench)
  case $gb in '' | *[!0-9]* | 0) echo "BENCH_PG_WAL_GB must be a whole number of GB" >&2; return 2 ;; esac
  "${q[@]}" -c "ALTER SYSTEM SET max_wal_size = '${gb}GB'" -c "ALTER SYSTEM SET min_wal_size = '${gb}GB'" \
    -c "SELECT pg_reload_conf()" >/dev/null
  "${q[@]}" -c "CREATE TABLE wal_warmup (x int)"
  for _ in $(seq 1 $((64 * gb))); do
    "${q[@]}" -c "INSERT INTO wal_warmup VALUES (1)" -c "SELECT pg_switch_wal()" >/dev/null
  done
  "${q[@]}" -c "DROP TABLE wal_warmup" -c "CHECKPOINT"
  echo "    $("${q[@]}" -c "SELECT count(*) FROM pg_ls_waldir()") WAL segments ready"
}

stop_throwaway_pg() {
  as_pg "$(pg_bin_dir)/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1 || true
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Stops the `perf record` running as PID, then writes its report to OUT: the functions above
# LIMIT % of the samples in DATA, then the split by binary.
perf_stop_and_report() {
  local pid=$1 data=$2 out=$3 limit=$4
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  perf report -i "$data" --no-children --percent-limit "$limit" --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -60 > "$out"
  perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -12 >> "$out"
}

# Polls URL until it answers 2xx, for up to 30 s; fails loudly otherwise.
wait_for_url() {
  for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2
  return 1
}

# A scratch directory for a script ($work, named after $1, owned by the Postgres user) that is
# removed on exit: first every process whose pid the script added to scratch_pids is stopped,
# then the throwaway Postgres in it.
scratch_pids=()
use_scratch_dir() {
  work=$(mktemp -d -t "$1-XXXXXX")
  pg_owned_dir "$work"
  trap scratch_cleanup EXIT
}
scratch_cleanup() {
  local pid
  for pid in "${scratch_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  stop_throwaway_pg "$work"
  rm -rf "$work"
}
