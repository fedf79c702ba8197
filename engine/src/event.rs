//! The events of the log: past-tense facts, versioned. A released variant is never edited;
//! a change adds a new schema module (`v2`) and a decoder arm for it.
//!
//! Encoding rules (bincode 2 through `codec`): no `serde_json::Value`, no `flatten`, no
//! `skip_serializing_if`, no internally tagged enums. User JSON travels as a `String`.
//!
//! The serde derives define the bytes (events are encoded through serde); bincode's own
//! `Decode` derive reads them back on the replay path, about a quarter faster than serde's
//! visitors. Both derives follow the same field order and enum indices, so they agree as long
//! as no serde attribute changes the layout (the rules above); `codec`'s tests check every
//! event type both ways.

use serde::{Deserialize, Serialize};

use crate::id::{Id, TimestampMs};

/// Events of schema version 1.
pub mod v1 {
    use super::*;

    /// Schema version of this module.
    pub const SCHEMA_VERSION: u16 = 1;

    /// One event: who (tenant), when, what.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Decode)]
    #[cfg_attr(test, derive(bincode::Encode))]
    pub struct Event {
        /// Tenant the event belongs to (`_system` for node-wide facts).
        pub tenant_id: String,
        /// When the command that produced it was accepted.
        pub timestamp_ms: TimestampMs,
        /// What happened.
        pub body: EventBody,
    }

    /// A capability step as declared at registration.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Decode)]
    #[cfg_attr(test, derive(bincode::Encode))]
    pub struct StepSpec {
        /// Step name, unique within the capability.
        pub name: String,
        /// Same input always gives the same output, with no side effect.
        pub deterministic: bool,
        /// Attempts before the step fails for good (>= 1).
        pub max_attempts: u32,
        /// Per-attempt timeout.
        pub timeout_ms: u64,
        /// First retry delay; doubles per attempt, plus deterministic jitter.
        pub backoff_base_ms: u64,
    }

    /// A capability's metadata as registered with the curator.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Decode)]
    #[cfg_attr(test, derive(bincode::Encode))]
    pub struct CapabilitySpec {
        /// Name, e.g. `content.parse_and_embed`.
        pub name: String,
        /// Realm that provides it.
        pub realm: String,
        /// Version; a changed definition gets a new version.
        pub version: u32,
        /// Intent types that resolve to it.
        pub intent_types: Vec<String>,
        /// Declared inputs (payload fields).
        pub inputs: Vec<String>,
        /// Declared outputs (result fields).
        pub outputs: Vec<String>,
        /// Every step is deterministic.
        pub deterministic: bool,
        /// The saga's steps in order.
        pub steps: Vec<StepSpec>,
    }

    /// What happened.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, bincode::Decode)]
    #[cfg_attr(test, derive(bincode::Encode))]
    pub enum EventBody {
        /// A tenant was created.
        TenantCreated,
        /// A token was issued (its secret never is in the log).
        TokenIssued {
            token_id: Id,
            user_id: String,
            expires_at_ms: TimestampMs,
        },
        /// A token was revoked.
        TokenRevoked { token_id: Id },
        /// A session was opened.
        SessionCreated {
            session_id: Id,
            user_id: String,
            context_json: String,
        },
        /// A session was closed.
        SessionClosed { session_id: Id },
        /// The curator registered a capability (version) on this node.
        CapabilityRegistered { spec: CapabilitySpec },
        /// An intent was accepted.
        IntentReceived {
            session_id: Id,
            intent_id: Id,
            execution_id: Id,
            intent_type: String,
            realm: String,
            payload_json: String,
            idempotency_key: Option<String>,
        },
        /// The saga that runs the intent started.
        /// `step_count` is how many of the capability's steps this intent runs (its plan).
        SagaStarted {
            execution_id: Id,
            capability: String,
            capability_version: u32,
            step_count: u32,
        },
        /// A step attempt started.
        StepStarted {
            execution_id: Id,
            step_index: u32,
            attempt: u32,
        },
        /// A step attempt succeeded; its output is recorded.
        StepCompleted {
            execution_id: Id,
            step_index: u32,
            attempt: u32,
            output_json: String,
            duration_ms: u64,
        },
        /// A step attempt failed.
        StepFailed {
            execution_id: Id,
            step_index: u32,
            attempt: u32,
            code: String,
            message: String,
            retryable: bool,
            duration_ms: u64,
        },
        /// A retry was scheduled after a delay.
        StepRetryScheduled {
            execution_id: Id,
            step_index: u32,
            next_attempt: u32,
            delay_ms: u64,
        },
        /// Compensation of completed steps began after a step failed for good.
        CompensationStarted {
            execution_id: Id,
            failed_step_index: u32,
        },
        /// A completed step was compensated.
        StepCompensated {
            execution_id: Id,
            step_index: u32,
            duration_ms: u64,
        },
        /// The saga completed with a result.
        SagaCompleted {
            execution_id: Id,
            result_json: String,
        },
        /// The saga failed (nothing to compensate, or compensation failed).
        SagaFailed {
            execution_id: Id,
            code: String,
            message: String,
            step: Option<String>,
        },
        /// The saga failed and every completed step was compensated.
        SagaCompensated {
            execution_id: Id,
            code: String,
            message: String,
            step: Option<String>,
        },
    }
}

pub use v1::{CapabilitySpec, Event, EventBody, StepSpec};

/// Tenant id used by node-wide events (capability registration). Not a valid tenant id, so
/// it can never collide with a real tenant.
pub const SYSTEM_TENANT: &str = "_system";

/// The event type as a small number (the WAL frame's record type) and a snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventType {
    TenantCreated = 1,
    TokenIssued = 2,
    TokenRevoked = 3,
    SessionCreated = 4,
    SessionClosed = 5,
    CapabilityRegistered = 6,
    IntentReceived = 7,
    SagaStarted = 8,
    StepStarted = 9,
    StepCompleted = 10,
    StepFailed = 11,
    StepRetryScheduled = 12,
    CompensationStarted = 13,
    StepCompensated = 14,
    SagaCompleted = 15,
    SagaFailed = 16,
    SagaCompensated = 17,
}

impl EventType {
    /// Every type, in code order.
    pub const ALL: [EventType; 17] = [
        Self::TenantCreated,
        Self::TokenIssued,
        Self::TokenRevoked,
        Self::SessionCreated,
        Self::SessionClosed,
        Self::CapabilityRegistered,
        Self::IntentReceived,
        Self::SagaStarted,
        Self::StepStarted,
        Self::StepCompleted,
        Self::StepFailed,
        Self::StepRetryScheduled,
        Self::CompensationStarted,
        Self::StepCompensated,
        Self::SagaCompleted,
        Self::SagaFailed,
        Self::SagaCompensated,
    ];

    /// The snake_case name used by the API, metrics and the replay tool.
    pub fn name(self) -> &'static str {
        match self {
            Self::TenantCreated => "tenant_created",
            Self::TokenIssued => "token_issued",
            Self::TokenRevoked => "token_revoked",
            Self::SessionCreated => "session_created",
            Self::SessionClosed => "session_closed",
            Self::CapabilityRegistered => "capability_registered",
            Self::IntentReceived => "intent_received",
            Self::SagaStarted => "saga_started",
            Self::StepStarted => "step_started",
            Self::StepCompleted => "step_completed",
            Self::StepFailed => "step_failed",
            Self::StepRetryScheduled => "step_retry_scheduled",
            Self::CompensationStarted => "compensation_started",
            Self::StepCompensated => "step_compensated",
            Self::SagaCompleted => "saga_completed",
            Self::SagaFailed => "saga_failed",
            Self::SagaCompensated => "saga_compensated",
        }
    }

    /// The type with this frame code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The type with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl EventBody {
    /// This body's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Self::TenantCreated => EventType::TenantCreated,
            Self::TokenIssued { .. } => EventType::TokenIssued,
            Self::TokenRevoked { .. } => EventType::TokenRevoked,
            Self::SessionCreated { .. } => EventType::SessionCreated,
            Self::SessionClosed { .. } => EventType::SessionClosed,
            Self::CapabilityRegistered { .. } => EventType::CapabilityRegistered,
            Self::IntentReceived { .. } => EventType::IntentReceived,
            Self::SagaStarted { .. } => EventType::SagaStarted,
            Self::StepStarted { .. } => EventType::StepStarted,
            Self::StepCompleted { .. } => EventType::StepCompleted,
            Self::StepFailed { .. } => EventType::StepFailed,
            Self::StepRetryScheduled { .. } => EventType::StepRetryScheduled,
            Self::CompensationStarted { .. } => EventType::CompensationStarted,
            Self::StepCompensated { .. } => EventType::StepCompensated,
            Self::SagaCompleted { .. } => EventType::SagaCompleted,
            Self::SagaFailed { .. } => EventType::SagaFailed,
            Self::SagaCompensated { .. } => EventType::SagaCompensated,
        }
    }

    /// The session this event concerns, when it names one.
    pub fn session_id(&self) -> Option<Id> {
        match self {
            Self::SessionCreated { session_id, .. }
            | Self::SessionClosed { session_id }
            | Self::IntentReceived { session_id, .. } => Some(*session_id),
            _ => None,
        }
    }

    /// The execution this event concerns, when it names one.
    pub fn execution_id(&self) -> Option<Id> {
        match self {
            Self::IntentReceived { execution_id, .. }
            | Self::SagaStarted { execution_id, .. }
            | Self::StepStarted { execution_id, .. }
            | Self::StepCompleted { execution_id, .. }
            | Self::StepFailed { execution_id, .. }
            | Self::StepRetryScheduled { execution_id, .. }
            | Self::CompensationStarted { execution_id, .. }
            | Self::StepCompensated { execution_id, .. }
            | Self::SagaCompleted { execution_id, .. }
            | Self::SagaFailed { execution_id, .. }
            | Self::SagaCompensated { execution_id, .. } => Some(*execution_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Codes and names round-trip for every type.
    #[test]
    fn type_codes_and_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_code(t as u8), Some(t));
            assert_eq!(EventType::from_name(t.name()), Some(t));
        }
        assert_eq!(EventType::from_code(0), None);
        assert_eq!(EventType::from_code(18), None);
    }
}
