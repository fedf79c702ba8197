//! The runtime's own capabilities: `runtime.echo` (CONTRACT section 5), `steps` deterministic
//! steps each passing `value` on; for tests and benchmarks (3 steps = the peer comparison job).

use std::sync::Arc;

use crate::event::{CapabilitySpec, StepSpec};
use crate::saga::{CapabilityHandler, SagaStep, StepError, StepFuture, StepInput};

/// Most steps an echo intent may ask for.
pub const ECHO_STEPS_MAX: u32 = 16;
/// Per-attempt timeout of an echo step.
pub const ECHO_STEP_TIMEOUT_MS: u64 = 5_000;

/// The `runtime.echo` capability.
#[derive(Debug, Default)]
pub struct Echo;

#[derive(Debug)]
struct EchoStep;

impl SagaStep for EchoStep {
    fn execute(&self, input: StepInput) -> StepFuture<String> {
        Box::pin(async move {
            let source = input
                .previous_output_json
                .as_deref()
                .unwrap_or(&input.payload_json);
            let parsed: serde_json::Value = serde_json::from_str(source).map_err(|e| {
                StepError::permanent("invalid_input", format!("input is not JSON: {e}"))
            })?;
            let value = parsed
                .get("value")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            Ok(serde_json::json!({ "value": value }).to_string())
        })
    }
}

impl CapabilityHandler for Echo {
    fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: "runtime.echo".into(),
            realm: "runtime".into(),
            version: 1,
            intent_types: vec!["runtime.echo".into()],
            inputs: vec!["value".into(), "steps".into()],
            outputs: vec!["value".into()],
            deterministic: true,
            steps: (1..=ECHO_STEPS_MAX)
                .map(|i| StepSpec {
                    name: format!("echo_{i}"),
                    deterministic: true,
                    max_attempts: 3,
                    timeout_ms: ECHO_STEP_TIMEOUT_MS,
                    backoff_base_ms: 10,
                })
                .collect(),
        }
    }

    fn plan(&self, payload: &serde_json::Value) -> Result<u32, String> {
        match payload.get("steps") {
            None => Ok(1),
            Some(steps) => match steps.as_u64() {
                Some(n) if (1..=u64::from(ECHO_STEPS_MAX)).contains(&n) => Ok(n as u32),
                _ => Err(format!(
                    "payload.steps must be an integer from 1 to {ECHO_STEPS_MAX}"
                )),
            },
        }
    }

    fn step(&self, index: usize) -> Option<Arc<dyn SagaStep>> {
        (index < ECHO_STEPS_MAX as usize).then(|| Arc::new(EchoStep) as Arc<dyn SagaStep>)
    }
}
