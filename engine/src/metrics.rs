//! Counters the engine keeps about saga steps (exported by the server as metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

use symphainy_wal::stats::Histogram;

use crate::event::EventType;

/// Number of event types.
const EVENT_TYPES: usize = EventType::ALL.len();

/// Per capability/step figures.
#[derive(Debug, Default)]
pub struct StepFigures {
    pub count: u64,
    pub success: u64,
    pub failure: u64,
    pub duration_ms: Histogram,
}

/// Step figures keyed by (capability, step), and events committed since start by
/// (tenant, event type).
#[derive(Debug, Default)]
pub struct EngineMetrics {
    steps: Mutex<BTreeMap<(String, String), StepFigures>>,
    /// Tenant -> count per event type code (index = code - 1).
    events: Mutex<BTreeMap<String, [u64; EVENT_TYPES]>>,
    reads: std::sync::atomic::AtomicU64,
}

impl EngineMetrics {
    /// Counts committed events.
    pub fn record_events<'a>(&self, events: impl Iterator<Item = (&'a str, EventType)>) {
        let mut counts = self.events.lock().unwrap_or_else(|e| e.into_inner());
        for (tenant, kind) in events {
            let index = (kind as usize).saturating_sub(1).min(EVENT_TYPES - 1);
            match counts.get_mut(tenant) {
                Some(row) => row[index] += 1,
                None => {
                    let mut row = [0; EVENT_TYPES];
                    row[index] = 1;
                    counts.insert(tenant.to_string(), row);
                }
            }
        }
    }

    /// Events committed since start: (tenant, type, count).
    pub fn events(&self) -> Vec<(String, &'static str, u64)> {
        let counts = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (tenant, row) in counts.iter() {
            for (kind, n) in EventType::ALL.iter().zip(row) {
                if *n > 0 {
                    out.push((tenant.clone(), kind.name(), *n));
                }
            }
        }
        out
    }

    /// Counts one read of the state.
    pub fn record_read(&self) {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads of the state since start.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

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
