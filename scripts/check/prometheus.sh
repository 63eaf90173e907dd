#!/usr/bin/env bash
# A throwaway Prometheus on loopback, in the foreground, for the dashboard checks:
#
#   scripts/check/prometheus.sh LISTEN DIR RULES_FILE JOB=HOST:PORT...
#
# Writes DIR/prometheus.yml (scrape and evaluate every second, RULES_FILE loaded, one job per
# JOB=HOST:PORT) and execs Debian's `prometheus` with its data in DIR/data, so that the caller's
# SIGTERM stops it.
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,8p' "$0" >&2; exit 2; }
listen=$1 dir=$2 rules=$(realpath "$3")
shift 3
case $listen in
  127.*) ;;
  *) echo "run-prometheus: $listen is not a loopback address" >&2; exit 2 ;;
esac
mkdir -p "$dir/data"
{
  printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n'
  printf 'rule_files:\n  - %s\n' "$rules"
  printf 'scrape_configs:\n'
  for job in "$@"; do
    printf '  - job_name: %s\n    static_configs:\n      - targets: [%s]\n' "${job%%=*}" "${job#*=}"
  done
} >"$dir/prometheus.yml"
promtool check config "$dir/prometheus.yml" >&2
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="$listen" --log.level=warn
