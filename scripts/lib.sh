#!/usr/bin/env bash
# Shared shell helpers for the project's scripts: finding (or installing) PostgreSQL's server
# binaries and running them as the `postgres` user when we are root (initdb refuses root).

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

# Runs a command as the postgres user when we are root, else as ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# Makes a directory that the postgres user can own when we are root.
pg_owned_dir() {
  mkdir -p "$1"
  if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$1"; fi
}
