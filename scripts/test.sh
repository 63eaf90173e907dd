#!/usr/bin/env bash
# Runs the whole test suite. The harness starts a throwaway PostgreSQL cluster itself (unless
# DATABASE_URL points at one); this script only makes sure the server binaries exist first.
. "$(dirname "$0")/lib.sh"
PG_BIN=$(pg_bin_dir)
export PG_BIN
# Some tests run the binaries as processes of their own (exit statuses, peak memory).
cargo build --workspace --bins --locked
exec cargo test --workspace --locked "$@"
