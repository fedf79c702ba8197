//! Realms: domain logic composed through the curator and the saga coordinator. The runtime
//! core never imports a realm; the server (and the replay tool) wire them in at startup.

pub mod content;
