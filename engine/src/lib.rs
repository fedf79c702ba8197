//! `symphainy-engine`: the deterministic core.
//!
//! - [`event`]: the versioned events; [`codec`]: the one place they become bytes.
//! - [`state`]: the state and its pure, total `apply`; [`digest`]: the canonical digest.
//! - [`saga`]: steps, capabilities, the curator's [`saga::Registry`] and `plan_next`.
//! - [`runtime`]: command -> events -> append -> apply -> dispatch, recovery and resume.
//! - [`builtin`]: the runtime's own capability `runtime.echo`.
//!
//! The engine reaches the log only through `symphainy_wal::Log`; `apply` reads no clock and
//! no randomness: time and ids come from [`id::Clock`] and [`id::IdSource`] at the edge.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod agents;
#[cfg(test)]
mod arbitrary;
pub mod builtin;
pub mod codec;
pub mod csv;
pub mod digest;
mod error;
pub mod event;
pub mod file;
pub mod id;
pub mod metrics;
pub mod realms;
pub mod runtime;
pub mod saga;
pub mod snapshot;
pub mod state;
pub mod testing;
pub mod view;

pub use error::{Error, Result};
pub use id::Id;
pub use runtime::{Runtime, RuntimeConfig, SubmitIntent, Submitted};
pub use state::State;

/// A registry with the runtime's built-in capabilities.
pub fn builtin_registry() -> Result<saga::Registry> {
    let mut registry = saga::Registry::default();
    registry.register(std::sync::Arc::new(builtin::Echo))?;
    Ok(registry)
}

/// The registry a node serves: the built-in capabilities and every realm's. The server
/// wires realms in through this function; the runtime core never imports a realm.
/// `docs/capability_inventory.md` is generated from it.
pub fn default_registry() -> Result<saga::Registry> {
    builtin_registry()
}
