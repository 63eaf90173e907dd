//! Integration suites: a real edge on port 0, real Postgres (a fresh database per test), real HTTP.
//! One test binary so the Postgres cluster and its template are set up once.

mod admin;
mod backlog;
mod bad_input;
mod batch;
mod bounds;
mod daemon;
mod dashboards;
mod docs;
mod faults;
mod group_commit;
mod guards;
mod hostile;
mod hostile_stripe;
mod https;
mod inspect;
mod ledger;
mod messages;
mod money;
mod notify;
mod notify_faults;
mod orders;
mod outage;
mod pg_tls;
mod proxy;
mod reconcile;
mod retried;
mod schema;
mod secrets;
mod slow_peers;
mod startup;
mod stripe_sim;
mod success_page;
mod support;
mod sweep;
mod webhook;
