#!/usr/bin/env bash
# The checks CI runs beside the tests, each installing and starting what it needs:
#   observability  the alert rules (promtool lint and rule tests), the dashboards (offline, Grafana's
#                  schema, and every query against a live Prometheus scraping the running binaries)
#   deploy         the deploy kit, statically: compose schema, Kubernetes schemas, haproxy -c,
#                  promtool, generated objects up to date
#   pgbouncer      the edge and the reconciler through PgBouncer: everything in session mode, a
#                  clear refusal in transaction mode
#   notify-sdk     order notifications verified by the official Stripe SDKs (Node, Python) in the
#                  example receivers of tests/apps/
#   sim-sdk        the simulator's session, refund and dispute lists auto-paginated by the official
#                  Stripe clients (Node, Python)
#   support-browser  the support page driven in headless Chromium (login, search, reconcile,
#                  redeliver, keyboard, 400 % zoom)
#
#   scripts/check.sh [NAME...]     (default: every check)
. "$(dirname "$0")/lib.sh"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(observability deploy pgbouncer notify-sdk sim-sdk support-browser)
for name in "${names[@]}"; do
  case $name in
    observability | deploy | pgbouncer | notify-sdk | sim-sdk | support-browser) echo "######## check $name"; "scripts/check/$name.sh" ;;
    *) echo "unknown check: $name (observability, deploy, pgbouncer, notify-sdk, sim-sdk, support-browser)" >&2; exit 2 ;;
  esac
done
