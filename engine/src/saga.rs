//! Saga steps and the capabilities that own them, the curator's registry, and `plan_next`:
//! the pure decision of what an execution does next, computed from its recorded state. The
//! runtime's saga driver and its resume-after-restart use the same function, so a resumed
//! saga continues exactly where the log says it stopped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::{CapabilitySpec, EventBody};
use crate::id::{Id, TimestampMs};
use crate::state::{Execution, StepStatus};

/// What a step receives. Owned, so step futures can be `'static`.
#[derive(Clone, Debug)]
pub struct StepInput {
    pub tenant_id: String,
    pub execution_id: Id,
    pub step_index: u32,
    pub attempt: u32,
    /// The intent's payload (JSON).
    pub payload_json: Arc<str>,
    /// The previous step's recorded output (JSON), none for the first step.
    pub previous_output_json: Option<Arc<str>>,
}

/// Why a step attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepError {
    /// snake_case code; the log records at most `STEP_ERROR_CODE_BYTES_MAX` bytes of it.
    pub code: String,
    /// Human sentence; the log records at most `RuntimeConfig::failure_message_bytes_max`
    /// bytes of it.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl StepError {
    /// A failure another attempt may fix.
    pub fn retryable(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }
    /// A failure no retry fixes.
    pub fn permanent(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }
}

/// Bytes of a step error's code the log records (a longer one is cut).
pub const STEP_ERROR_CODE_BYTES_MAX: usize = 64;

/// A boxed step future.
pub type StepFuture<T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send>>;

/// A step future whose panic becomes the step's failure (`step_panicked`, permanent: a panic
/// is a defect another attempt would meet again) instead of ending the task that drives the
/// saga, which would leave the execution running with nobody driving it, and meet the same
/// panic again after every restart. The runtime and `check-determinism` run every step
/// attempt and compensation through it.
pub struct Guarded<T>(pub StepFuture<T>);

impl<T> fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Guarded")
    }
}

impl<T> Future for Guarded<T> {
    type Output = Result<T, StepError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string());
                std::task::Poll::Ready(Err(StepError::permanent(
                    "step_panicked",
                    format!("the step panicked: {what}"),
                )))
            }
        }
    }
}

/// One step of a saga.
pub trait SagaStep: Send + Sync + fmt::Debug {
    /// Runs one attempt; returns the output as JSON.
    fn execute(&self, input: StepInput) -> StepFuture<String>;
    /// Undoes a completed attempt, given its recorded output. Default: nothing to undo.
    fn compensate(&self, input: StepInput, output_json: Arc<str>) -> StepFuture<()> {
        let _ = (input, output_json);
        Box::pin(async { Ok(()) })
    }
}

/// A capability as the runtime runs it: its spec, its plan, its steps.
pub trait CapabilityHandler: Send + Sync + fmt::Debug {
    /// The metadata the curator registers.
    fn spec(&self) -> CapabilitySpec;
    /// Validates a payload; returns how many of the spec's steps this intent runs.
    fn plan(&self, payload: &serde_json::Value) -> Result<u32, String> {
        let _ = payload;
        u32::try_from(self.spec().steps.len()).map_err(|_| "too many steps".to_string())
    }
    /// The step at `index`.
    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>>;
    /// The saga's result from the steps' recorded outputs (default: the last output). One
    /// larger than the runtime's step output limit ends the saga `result_too_large` (failed,
    /// its completed steps not compensated) instead of completing it.
    fn result(&self, outputs: &[&str]) -> String {
        outputs
            .last()
            .map_or_else(|| "null".to_string(), |s| s.to_string())
    }
}

/// A registered capability version: its spec and its handler.
pub type RegistryEntry = (Arc<CapabilitySpec>, Arc<dyn CapabilityHandler>);

/// The curator (capability metadata by intent type; it never executes) and the
/// coordinator's table of handlers (which do).
#[derive(Debug, Default)]
pub struct Registry {
    specs: BTreeMap<String, Arc<CapabilitySpec>>,
    by_intent: BTreeMap<String, String>,
    /// Capability name -> version -> (spec, handler); looked up by `&str`, no allocation.
    handlers: HashMap<String, HashMap<u32, RegistryEntry>>,
}

impl Registry {
    /// Registers a capability; each intent type may belong to one capability only.
    pub fn register(&mut self, handler: Arc<dyn CapabilityHandler>) -> Result<()> {
        let spec = handler.spec();
        if spec.steps.is_empty() || spec.steps.iter().any(|s| s.max_attempts == 0) {
            return Err(Error::InvalidRequest(format!(
                "capability {} has an invalid step list",
                spec.name
            )));
        }
        for intent in &spec.intent_types {
            if let Some(owner) = self.by_intent.get(intent)
                && owner != &spec.name
            {
                return Err(Error::InvalidRequest(format!(
                    "intent type {intent} already belongs to capability {owner}"
                )));
            }
        }
        for intent in &spec.intent_types {
            self.by_intent.insert(intent.clone(), spec.name.clone());
        }
        let spec = Arc::new(spec);
        self.handlers
            .entry(spec.name.clone())
            .or_default()
            .insert(spec.version, (spec.clone(), handler));
        self.specs.insert(spec.name.clone(), spec);
        Ok(())
    }

    /// The capability an intent type resolves to.
    pub fn resolve(&self, intent_type: &str) -> Result<&Arc<CapabilitySpec>> {
        self.by_intent
            .get(intent_type)
            .and_then(|name| self.specs.get(name))
            .ok_or_else(|| Error::UnknownIntent(intent_type.to_string()))
    }

    /// The handler of a capability version.
    pub fn handler(&self, name: &str, version: u32) -> Option<&Arc<dyn CapabilityHandler>> {
        self.handlers
            .get(name)?
            .get(&version)
            .map(|(_, handler)| handler)
    }

    /// The spec and handler of a capability version.
    pub fn entry(
        &self,
        name: &str,
        version: u32,
    ) -> Option<&(Arc<CapabilitySpec>, Arc<dyn CapabilityHandler>)> {
        self.handlers.get(name)?.get(&version)
    }

    /// Every registered capability, by name.
    pub fn capabilities(&self) -> impl Iterator<Item = &CapabilitySpec> {
        self.specs.values().map(|spec| spec.as_ref())
    }

    /// The capability inventory as Markdown (docs/capability_inventory.md is this text).
    pub fn inventory_markdown(&self) -> String {
        let mut out = String::from(
            "# Capability inventory\n\nGenerated from the curator's registry \
             (`cargo run -p symphainy-engine --example inventory`); a test fails when this \
             file and the registry disagree.\n",
        );
        for spec in self.capabilities() {
            out.push_str(&format!(
                "\n## `{}` (realm `{}`, version {})\n\n- intent types: {}\n- inputs: {}\n- outputs: {}\n- deterministic: {}\n\n| step | deterministic | max attempts | timeout ms | backoff base ms |\n| --- | --- | --- | --- | --- |\n",
                spec.name,
                spec.realm,
                spec.version,
                list(&spec.intent_types),
                list(&spec.inputs),
                list(&spec.outputs),
                spec.deterministic
            ));
            for step in &spec.steps {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} | {} |\n",
                    step.name,
                    step.deterministic,
                    step.max_attempts,
                    step.timeout_ms,
                    step.backoff_base_ms
                ));
            }
        }
        out
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upper bound of a retry delay.
pub const RETRY_DELAY_MAX_MS: u64 = 60_000;

/// Exponential backoff with deterministic jitter: `base * 2^(attempt-1)` plus up to `base`
/// of jitter derived from (execution, step, attempt), capped at [`RETRY_DELAY_MAX_MS`].
pub fn retry_delay_ms(base_ms: u64, execution_id: Id, step_index: u32, next_attempt: u32) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << next_attempt.saturating_sub(2).min(20));
    let mut x = (execution_id.0 as u64) ^ ((execution_id.0 >> 64) as u64);
    x ^= (u64::from(step_index) << 32) | u64::from(next_attempt);
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let jitter = if base_ms == 0 { 0 } else { x % base_ms };
    exp.saturating_add(jitter).min(RETRY_DELAY_MAX_MS)
}

/// What an execution does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run attempt `attempt` of step `index` (not before `not_before_ms`).
    RunStep {
        index: u32,
        attempt: u32,
        not_before_ms: Option<TimestampMs>,
    },
    /// Record that step `index` will be retried.
    ScheduleRetry {
        index: u32,
        next_attempt: u32,
        delay_ms: u64,
    },
    /// Begin compensating because step `failed_index` failed for good.
    StartCompensation { failed_index: u32 },
    /// Compensate completed step `index`.
    Compensate { index: u32 },
    /// Record the saga's end.
    Finish(EventBody),
    /// Nothing: the execution has ended (or is unknown).
    Done,
}

/// Decides the next action of `execution` under `spec`. Pure.
pub fn plan_next(
    execution: &Execution,
    spec: &CapabilitySpec,
    handler: &dyn CapabilityHandler,
) -> Next {
    let id = execution.execution_id;
    if execution.status.is_terminal() || execution.steps.is_empty() {
        return Next::Done;
    }
    let step_name = |i: u32| spec.steps.get(i as usize).map(|s| s.name.clone());
    if let Some(failed) = execution.compensating_from {
        let completed = (0..failed)
            .rev()
            .find(|&i| execution.steps[i as usize].status == StepStatus::Completed);
        return match completed {
            Some(index) => Next::Compensate { index },
            None => {
                let (code, message) = execution.steps[failed as usize]
                    .error
                    .as_deref()
                    .cloned()
                    .unwrap_or_default();
                Next::Finish(EventBody::SagaCompensated {
                    execution_id: id,
                    code,
                    message,
                    step: step_name(failed),
                })
            }
        };
    }
    let Some(index) = execution
        .steps
        .iter()
        .position(|s| s.status != StepStatus::Completed)
    else {
        let outputs: Vec<&str> = execution
            .steps
            .iter()
            .filter_map(|s| s.output_json.as_deref())
            .collect();
        return Next::Finish(EventBody::SagaCompleted {
            execution_id: id,
            result_json: handler.result(&outputs),
        });
    };
    let step = &execution.steps[index];
    let index32 = index as u32;
    match step.status {
        StepStatus::Pending | StepStatus::Running => Next::RunStep {
            index: index32,
            attempt: step.attempts + 1,
            not_before_ms: step.retry_at_ms.get(),
        },
        StepStatus::Failed => {
            let step_spec = &spec.steps[index];
            if step.retryable && step.attempts < step_spec.max_attempts {
                let next_attempt = step.attempts + 1;
                let delay_ms = retry_delay_ms(step_spec.backoff_base_ms, id, index32, next_attempt);
                Next::ScheduleRetry {
                    index: index32,
                    next_attempt,
                    delay_ms,
                }
            } else if execution.steps[..index]
                .iter()
                .any(|s| s.status == StepStatus::Completed)
            {
                Next::StartCompensation {
                    failed_index: index32,
                }
            } else {
                let (code, message) = step.error.as_deref().cloned().unwrap_or_default();
                Next::Finish(EventBody::SagaFailed {
                    execution_id: id,
                    code,
                    message,
                    step: step_name(index32),
                })
            }
        }
        // Compensated steps only exist while compensating, handled above.
        StepStatus::Completed | StepStatus::Compensated => Next::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Backoff doubles per attempt, jitter stays below the base, and both are reproducible.
    #[test]
    fn backoff_is_exponential_and_deterministic() {
        let id = Id(12345);
        let d2 = retry_delay_ms(100, id, 0, 2);
        let d3 = retry_delay_ms(100, id, 0, 3);
        let d4 = retry_delay_ms(100, id, 0, 4);
        assert!((100..200).contains(&d2), "{d2}");
        assert!((200..300).contains(&d3), "{d3}");
        assert!((400..500).contains(&d4), "{d4}");
        assert_eq!(d3, retry_delay_ms(100, id, 0, 3));
        assert_eq!(retry_delay_ms(100, id, 0, 40), RETRY_DELAY_MAX_MS);
    }
}
