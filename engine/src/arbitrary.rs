//! Proptest strategies for events, shared by the tests of the codec and of `apply`: one list
//! of every event body, built from the value strategies a test picks (values at the edges of
//! their encodings for the codec; a few ids and names for `apply`, to reach deep states).

use proptest::prelude::*;

use crate::event::{CapabilitySpec, EventBody, StepSpec};
use crate::id::Id;

/// The values events are made of.
#[derive(Clone, Debug)]
pub(crate) struct Values {
    pub id: BoxedStrategy<Id>,
    pub small: BoxedStrategy<u32>,
    pub number: BoxedStrategy<u64>,
    pub time: BoxedStrategy<i64>,
    pub text: BoxedStrategy<String>,
    pub spec: BoxedStrategy<CapabilitySpec>,
}

/// A capability of `steps` deterministic steps.
pub(crate) fn spec(name: &str, version: u32, steps: usize) -> CapabilitySpec {
    CapabilitySpec {
        name: name.into(),
        realm: "r".into(),
        version,
        intent_types: vec!["t".into()],
        inputs: vec![],
        outputs: vec![],
        deterministic: true,
        steps: (0..steps)
            .map(|i| StepSpec {
                name: format!("s{i}"),
                deterministic: true,
                max_attempts: 3,
                timeout_ms: 10,
                backoff_base_ms: 1,
            })
            .collect(),
    }
}

impl Values {
    /// Every event body (a new event type must be added here: the codec's tests check that
    /// every type comes out).
    pub fn body(&self) -> BoxedStrategy<EventBody> {
        prop_oneof![
            Just(EventBody::TenantCreated),
            (self.id.clone(), self.text.clone(), self.time.clone()).prop_map(
                |(token_id, user_id, expires_at_ms)| {
                    EventBody::TokenIssued {
                        token_id,
                        user_id,
                        expires_at_ms,
                    }
                }
            ),
            self.id
                .clone()
                .prop_map(|token_id| EventBody::TokenRevoked { token_id }),
            (self.id.clone(), self.text.clone(), self.text.clone()).prop_map(
                |(session_id, user_id, context_json)| {
                    EventBody::SessionCreated {
                        session_id,
                        user_id,
                        context_json,
                    }
                }
            ),
            self.id
                .clone()
                .prop_map(|session_id| EventBody::SessionClosed { session_id }),
            self.spec
                .clone()
                .prop_map(|spec| EventBody::CapabilityRegistered { spec }),
            (
                (self.id.clone(), self.id.clone(), self.id.clone()),
                (
                    self.text.clone(),
                    self.text.clone(),
                    self.text.clone(),
                    prop::option::of(self.text.clone())
                )
            )
                .prop_map(
                    |(
                        (session_id, intent_id, execution_id),
                        (intent_type, realm, payload_json, idempotency_key),
                    )| EventBody::IntentReceived {
                        session_id,
                        intent_id,
                        execution_id,
                        intent_type,
                        realm,
                        payload_json,
                        idempotency_key,
                    }
                ),
            (
                self.id.clone(),
                self.text.clone(),
                self.small.clone(),
                self.small.clone()
            )
                .prop_map(
                    |(execution_id, capability, capability_version, step_count)| {
                        EventBody::SagaStarted {
                            execution_id,
                            capability,
                            capability_version,
                            step_count,
                        }
                    }
                ),
            (self.id.clone(), self.small.clone(), self.small.clone()).prop_map(
                |(execution_id, step_index, attempt)| {
                    EventBody::StepStarted {
                        execution_id,
                        step_index,
                        attempt,
                    }
                }
            ),
            (
                self.id.clone(),
                self.small.clone(),
                self.small.clone(),
                self.text.clone(),
                self.number.clone()
            )
                .prop_map(
                    |(execution_id, step_index, attempt, output_json, duration_ms)| {
                        EventBody::StepCompleted {
                            execution_id,
                            step_index,
                            attempt,
                            output_json,
                            duration_ms,
                        }
                    }
                ),
            (
                (self.id.clone(), self.small.clone(), self.small.clone()),
                (
                    self.text.clone(),
                    self.text.clone(),
                    any::<bool>(),
                    self.number.clone()
                )
            )
                .prop_map(
                    |(
                        (execution_id, step_index, attempt),
                        (code, message, retryable, duration_ms),
                    )| {
                        EventBody::StepFailed {
                            execution_id,
                            step_index,
                            attempt,
                            code,
                            message,
                            retryable,
                            duration_ms,
                        }
                    }
                ),
            (
                self.id.clone(),
                self.small.clone(),
                self.small.clone(),
                self.number.clone()
            )
                .prop_map(|(execution_id, step_index, next_attempt, delay_ms)| {
                    EventBody::StepRetryScheduled {
                        execution_id,
                        step_index,
                        next_attempt,
                        delay_ms,
                    }
                }),
            (self.id.clone(), self.small.clone()).prop_map(|(execution_id, failed_step_index)| {
                EventBody::CompensationStarted {
                    execution_id,
                    failed_step_index,
                }
            }),
            (self.id.clone(), self.small.clone(), self.number.clone()).prop_map(
                |(execution_id, step_index, duration_ms)| {
                    EventBody::StepCompensated {
                        execution_id,
                        step_index,
                        duration_ms,
                    }
                }
            ),
            (self.id.clone(), self.text.clone()).prop_map(|(execution_id, result_json)| {
                EventBody::SagaCompleted {
                    execution_id,
                    result_json,
                }
            }),
            (
                self.id.clone(),
                self.text.clone(),
                self.text.clone(),
                prop::option::of(self.text.clone())
            )
                .prop_map(|(execution_id, code, message, step)| {
                    EventBody::SagaFailed {
                        execution_id,
                        code,
                        message,
                        step,
                    }
                }),
            (
                self.id.clone(),
                self.text.clone(),
                self.text.clone(),
                prop::option::of(self.text.clone())
            )
                .prop_map(|(execution_id, code, message, step)| {
                    EventBody::SagaCompensated {
                        execution_id,
                        code,
                        message,
                        step,
                    }
                }),
        ]
        .boxed()
    }
}
