//! The metrics machinery both binaries declare their metrics with: the process-wide Prometheus
//! recorder, label sets built from enums, metric families indexed by those labels, and the
//! [`declare_metrics!`](crate::declare_metrics) macro, from which each binary's one declaration
//! per metric (name, help, kind, labels) yields its handles, its descriptions and its list of
//! names. The declarations themselves live in `edge/src/metrics.rs` and
//! `reconciler/src/metrics.rs`.

use std::marker::PhantomData;
use std::sync::OnceLock;
use std::time::Duration;

pub use metrics::Unit;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: 1 ms to 10 s, dense where webhook latencies live (1–50 ms).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of histograms that count events (names ending in `_events`): batch sizes up to
/// `EDGE_BATCH_MAX`'s ceiling.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
];

/// How often histogram and idle-series housekeeping runs for the exporter.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed on first use; one per process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_events".into()), COUNT_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global: render an empty registry rather than fail.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, …), read from the OS at
/// each scrape by a maintained collector.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    })
}

/// The process metrics (from `metrics-process`, the same names as Prometheus's own clients) that the
/// dashboards use; both binaries export them.
pub const PROCESS_NAMES: &[&str] = &[
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
];

/// Renders the Prometheus text exposition (the process metrics read now).
pub fn render() -> String {
    handle();
    process_collector().collect();
    handle().render()
}

/// Runs the exporter's housekeeping for ever (spawn it; abort it on shutdown).
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// The HTTP status class label of a status code.
pub fn status_class(status: u16) -> StatusClass {
    match status {
        100..=199 => StatusClass::Informational,
        200..=299 => StatusClass::Success,
        300..=399 => StatusClass::Redirection,
        400..=499 => StatusClass::ClientError,
        _ => StatusClass::ServerError,
    }
}

/// A label whose values are a fixed set known at compile time (an enum, declared with
/// [`label!`](crate::label)), or a small index.
pub trait Label: Copy + 'static {
    /// The label's name.
    const KEY: &'static str;
    /// How many values it can take (the size of a family's handle table).
    const COUNT: usize;
    /// Its position among the values, `0..COUNT`.
    fn index(self) -> usize;
    /// Every value, in index order.
    fn all() -> Vec<Self>;
    fn value(self) -> String;
}

/// The labels of a family: none (`()`), one [`Label`], or two.
pub trait LabelSet: Copy + 'static {
    const SLOTS: usize;
    fn slot(self) -> usize;
    fn values() -> Vec<Self>;
    fn pairs(self) -> Vec<(&'static str, String)>;
}

impl LabelSet for () {
    const SLOTS: usize = 1;
    fn slot(self) -> usize {
        0
    }
    fn values() -> Vec<Self> {
        vec![()]
    }
    fn pairs(self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl<A: Label> LabelSet for A {
    const SLOTS: usize = A::COUNT;
    fn slot(self) -> usize {
        Label::index(self)
    }
    fn values() -> Vec<Self> {
        Label::all()
    }
    fn pairs(self) -> Vec<(&'static str, String)> {
        vec![(A::KEY, self.value())]
    }
}

impl<A: Label, B: Label> LabelSet for (A, B) {
    const SLOTS: usize = A::COUNT * B::COUNT;
    fn slot(self) -> usize {
        Label::index(self.0) * B::COUNT + Label::index(self.1)
    }
    fn values() -> Vec<Self> {
        A::all()
            .into_iter()
            .flat_map(|a| B::all().into_iter().map(move |b| (a, b)))
            .collect()
    }
    fn pairs(self) -> Vec<(&'static str, String)> {
        vec![(A::KEY, self.0.value()), (B::KEY, self.1.value())]
    }
}

/// Declares an enum label: its variants, their label values, and its [`Label`] implementation.
#[macro_export]
macro_rules! label {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $key:literal { $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$( $name::$variant ),+];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $value ),+ }
            }
        }

        impl $crate::metrics::Label for $name {
            const KEY: &'static str = $key;
            const COUNT: usize = [$( $value ),+].len();
            fn index(self) -> usize {
                self as usize
            }
            fn all() -> Vec<Self> {
                Self::ALL.to_vec()
            }
            fn value(self) -> String {
                self.as_str().to_owned()
            }
        }
    };
}

label! {
    /// `status_class` of HTTP request counters (`error`: no answer at all).
    pub enum StatusClass: "status_class" {
        Informational = "1xx",
        Success = "2xx",
        Redirection = "3xx",
        ClientError = "4xx",
        ServerError = "5xx",
        Error = "error",
    }
}

/// What a family needs to describe itself.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Unit,
}

/// A table of handles indexed by a label set; only the values given at registration exist.
#[derive(Debug, Clone)]
struct Table<M, L> {
    handles: Vec<Option<M>>,
    _labels: PhantomData<L>,
}

impl<M: Clone, L: LabelSet> Table<M, L> {
    fn new(values: Vec<L>, make: impl Fn(L) -> M) -> Self {
        let mut handles = vec![None; L::SLOTS];
        for v in values {
            if let Some(slot) = handles.get_mut(v.slot()) {
                *slot = Some(make(v));
            }
        }
        Self {
            handles,
            _labels: PhantomData,
        }
    }

    fn get(&self, l: L) -> Option<&M> {
        self.handles.get(l.slot()).and_then(Option::as_ref)
    }
}

/// A counter family; every registered series starts at zero.
#[derive(Debug, Clone)]
pub struct Counters<L>(Table<Counter, L>);

impl<L: LabelSet> Counters<L> {
    pub fn register(desc: Desc, values: Vec<L>) -> Self {
        metrics::describe_counter!(desc.name, desc.unit, desc.help.trim());
        Self(Table::new(values, |l| {
            let c = metrics::counter!(desc.name, &l.pairs());
            c.increment(0);
            c
        }))
    }

    pub fn add(&self, l: L, n: u64) {
        if let Some(c) = self.0.get(l) {
            c.increment(n);
        }
    }

    pub fn inc(&self, l: L) {
        self.add(l, 1);
    }
}

impl Counters<()> {
    pub fn increment(&self, n: u64) {
        self.add((), n);
    }
}

impl<L: LabelSet> Counters<L> {
    /// Sets a counter kept elsewhere (an atomic read at scrape time).
    pub fn absolute(&self, l: L, v: u64) {
        if let Some(c) = self.0.get(l) {
            c.absolute(v);
        }
    }
}

/// A gauge family.
#[derive(Debug, Clone)]
pub struct Gauges<L>(Table<Gauge, L>);

impl<L: LabelSet> Gauges<L> {
    pub fn register(desc: Desc, values: Vec<L>) -> Self {
        metrics::describe_gauge!(desc.name, desc.unit, desc.help.trim());
        Self(Table::new(values, |l| {
            let g = metrics::gauge!(desc.name, &l.pairs());
            g.set(0.0);
            g
        }))
    }

    pub fn set(&self, l: L, v: f64) {
        if let Some(g) = self.0.get(l) {
            g.set(v);
        }
    }
}

impl Gauges<()> {
    pub fn set_value(&self, v: f64) {
        self.set((), v);
    }

    pub fn increment(&self, v: f64) {
        if let Some(g) = self.0.get(()) {
            g.increment(v);
        }
    }

    pub fn decrement(&self, v: f64) {
        if let Some(g) = self.0.get(()) {
            g.decrement(v);
        }
    }
}

/// A histogram family (buckets by name suffix: [`LATENCY_BUCKETS`], [`COUNT_BUCKETS`]).
#[derive(Debug, Clone)]
pub struct Histograms<L>(Table<Histogram, L>);

impl<L: LabelSet> Histograms<L> {
    pub fn register(desc: Desc, values: Vec<L>) -> Self {
        metrics::describe_histogram!(desc.name, desc.unit, desc.help.trim());
        Self(Table::new(values, |l| {
            metrics::histogram!(desc.name, &l.pairs())
        }))
    }

    pub fn record(&self, l: L, v: f64) {
        if let Some(h) = self.0.get(l) {
            h.record(v);
        }
    }
}

impl Histograms<()> {
    pub fn record_value(&self, v: f64) {
        self.record((), v);
    }
}

/// Declares one binary's metrics, each once: its field, kind and labels, its name, its unit, and
/// its help text (the doc comment). Generates the struct of handles, `NAMES`, and `register`,
/// which describes every metric and creates every known series at zero. A metric whose label
/// values are only known at start-up lists them with `for <expr>` (an expression over the
/// arguments of `register`).
#[macro_export]
macro_rules! declare_metrics {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident ( $($arg:ident : $arg_ty:ty),* ) {
            $(
                $(#[doc = $help:literal])+
                $field:ident : $family:ident < $labels:ty > = $metric:literal, $unit:ident $(, for $values:expr)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name {
            $( $(#[doc = $help])+ pub $field: $crate::metrics::$family<$labels>, )*
        }

        impl $name {
            /// Every metric name of this set.
            pub const NAMES: &'static [&'static str] = &[$( $metric ),*];

            /// Describes every metric and registers every known series.
            pub fn register($($arg: $arg_ty),*) -> Self {
                $crate::metrics::handle();
                Self {
                    $(
                        $field: $crate::metrics::$family::register(
                            $crate::metrics::Desc {
                                name: $metric,
                                help: concat!($($help),+),
                                unit: $crate::metrics::Unit::$unit,
                            },
                            $crate::declare_metrics!(@values $labels $(, $values)?),
                        ),
                    )*
                }
            }
        }
    };
    (@values $labels:ty) => { <$labels as $crate::metrics::LabelSet>::values() };
    (@values $labels:ty, $values:expr) => { $values };
}
