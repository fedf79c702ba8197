//! `symphainy-engine`: the deterministic core. It will own the versioned event types, the
//! state and its pure `apply`, the canonical digest, the runtime (command -> events -> append
//! -> apply -> dispatch), the curator, the saga coordinator, policy, the agent foundation and
//! the content realm. It reaches the log only through `symphainy_wal::Log`.
