//! `symphainy-sdk`: the typed Rust client of the HTTP and WebSocket API (CONTRACT.md). It will
//! own admin calls, sessions, intents, execution status, WAL slices and WebSocket
//! subscribe-with-resume.
