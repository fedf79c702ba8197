//! Counters the engine keeps about saga steps (exported by the server as metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

use symphainy_wal::stats::Histogram;

/// Per capability/step figures.
#[derive(Debug, Default)]
pub struct StepFigures {
    pub count: u64,
    pub success: u64,
    pub failure: u64,
    pub duration_ms: Histogram,
}

/// Step figures keyed by (capability, step).
#[derive(Debug, Default)]
pub struct EngineMetrics {
    steps: Mutex<BTreeMap<(String, String), StepFigures>>,
}

impl EngineMetrics {
    /// Records one finished step attempt.
    pub fn record_step(&self, capability: &str, step: &str, success: bool, duration_ms: u64) {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        let key = (capability.to_string(), step.to_string());
        let figures = steps.entry(key).or_default();
        figures.count += 1;
        if success {
            figures.success += 1;
        } else {
            figures.failure += 1;
        }
        figures.duration_ms.record(duration_ms);
    }

    /// A snapshot: (capability, step, count, success, failure, p50 ms, p99 ms).
    pub fn steps(&self) -> Vec<(String, String, u64, u64, u64, u64, u64)> {
        let steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps
            .iter()
            .map(|((c, s), f)| {
                (
                    c.clone(),
                    s.clone(),
                    f.count,
                    f.success,
                    f.failure,
                    f.duration_ms.quantile(0.5),
                    f.duration_ms.quantile(0.99),
                )
            })
            .collect()
    }
}
