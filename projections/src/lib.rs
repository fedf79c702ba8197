//! `symphainy-projections`: views derived from the log. It will own the `Projection` trait and
//! its checkpointed runner, the Redis state surface (with an in-memory fallback) and the
//! Arango-style graph view on sled, each rebuildable from the WAL.
