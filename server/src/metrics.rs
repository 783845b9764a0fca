//! The process-wide Prometheus recorder behind `GET /_metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// until upkeep drains it, so without this an unscraped node grows without bound (~14 bytes a
/// request was measured).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the recorder once per process (later calls reuse it). `None` if
/// another recorder was installed first by the embedding program.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new().set_buckets(&buckets).ok()?;
            match builder.install_recorder() {
                Ok(h) => {
                    spawn_upkeep(h.clone());
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /_metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

/// Sets the process gauges a leak shows in: resident memory, open descriptors, threads
/// and live tokio tasks (the soak test watches their slope). Linux `/proc`; elsewhere
/// only the task count.
pub(crate) fn record_process() {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        metrics::gauge!("process_tokio_alive_tasks").set(h.metrics().num_alive_tasks() as f64);
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next().and_then(|v| v.parse::<f64>().ok())) {
                (Some("VmRSS:"), Some(kib)) => {
                    metrics::gauge!("process_resident_memory_bytes").set(kib * 1024.0)
                }
                (Some("Threads:"), Some(n)) => metrics::gauge!("process_threads").set(n),
                _ => {}
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
}

/// Drains histogram samples in the background for the life of the process. A plain thread, not
/// a task: the recorder may be installed before (or outside) any runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started; run /_metrics scrapes to drain samples");
    }
}
