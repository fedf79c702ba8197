//! The key-value store under the state surface: Redis, or an in-memory map with the same
//! behaviour (the embedded default). Both run [`crate::conformance::state_store`].
//!
//! Writes come as transactions ([`Tx`]); each is applied atomically (Redis: `MULTI`/`EXEC`),
//! and the transactions of one [`StateStore::commit`] travel in one pipeline, in order. A
//! transaction touches the keys of one tenant only (`t:{tenant}:...`, one Redis Cluster
//! slot), or the store's own meta keys.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Error, Result};

/// How long a Redis command may take before it counts as failed.
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to Redis may take.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times the connection manager retries a reconnection before a command fails
/// (the projection runner then backs off and retries the whole batch).
pub const REDIS_RECONNECT_RETRIES: usize = 2;
/// Keys per `SCAN` page and per `UNLINK` when dumping or clearing.
pub const SCAN_PAGE_KEYS: usize = 1_000;
/// Commands per pipeline when a commit is large (bounds the memory of one round trip).
pub const PIPELINE_COMMANDS_MAX: usize = 50_000;

/// The prefix of every key the state surface owns. Tenant data lives under
/// `t:{tenant}:...`; the projection's global checkpoint lives under `{_symphainy}:...`.
pub const KEY_PATTERNS: [&str; 2] = ["t:{*", "{_symphainy}:*"];

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Set(String, String),
    IncrBy(String, i64),
    Delete(String),
    /// Sets the key and reports the value it replaced (Redis `SET key value GET`): how a
    /// checkpoint notices that the store lost writes (a Redis restarted without persistence).
    Swap(String, String),
}

/// Writes applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tx {
    pub writes: Vec<Write>,
}

/// Counts of store operations (CONTRACT section 7, `state.ops`).
#[derive(Debug, Default)]
pub struct OpCounts {
    pub get: AtomicU64,
    pub set: AtomicU64,
    pub delete: AtomicU64,
}

impl OpCounts {
    fn count(&self, tx: &Tx) {
        for w in &tx.writes {
            match w {
                Write::Set(..) | Write::IncrBy(..) | Write::Swap(..) => {
                    self.set.fetch_add(1, Ordering::Relaxed)
                }
                Write::Delete(..) => self.delete.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// The state surface's store.
#[derive(Debug)]
pub enum StateStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl StateStore {
    /// An empty in-memory store.
    pub fn memory() -> Self {
        Self::Memory(MemoryStore::default())
    }

    /// A Redis store. Connects lazily: a Redis that is down now only delays the projection.
    /// Call inside a tokio runtime (the connection's tasks run on it).
    pub fn redis(url: &str) -> Result<Self> {
        RedisStore::new(url).map(Self::Redis)
    }

    /// `memory` or the Redis URL without credentials, for logs and metrics.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory(_) => "memory".into(),
            Self::Redis(r) => r.describe.clone(),
        }
    }

    pub fn ops(&self) -> &OpCounts {
        match self {
            Self::Memory(m) => &m.ops,
            Self::Redis(r) => &r.ops,
        }
    }

    /// Applies `txs` in order, each atomically; returns the replaced values of the
    /// [`Write::Swap`]s, in order.
    pub async fn commit(&self, txs: &[Tx]) -> Result<Vec<Option<String>>> {
        match self {
            Self::Memory(m) => m.commit(txs),
            Self::Redis(r) => r.commit(txs).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.get_many(&[key.to_string()]).await?.pop().flatten())
    }

    /// Values of several keys in one round trip (one `GET` each, so keys may live in
    /// different cluster slots).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        match self {
            Self::Memory(m) => Ok(m.get_many(keys)),
            Self::Redis(r) => r.get_many(keys).await,
        }
    }

    /// Values of several keys as of one instant (Redis: one `MULTI`/`EXEC`, so the keys must
    /// share a cluster slot; memory: under one lock hold).
    pub async fn get_atomic(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        match self {
            Self::Memory(m) => Ok(m.get_many(keys)),
            Self::Redis(r) => r.get_atomic(keys).await,
        }
    }

    /// Every key the surface owns with its value, sorted: the canonical dump that rebuild
    /// and incremental maintenance are compared by.
    pub async fn dump(&self) -> Result<BTreeMap<String, String>> {
        match self {
            Self::Memory(m) => Ok(m.dump()),
            Self::Redis(r) => r.dump().await,
        }
    }

    /// Deletes every key the surface owns; returns how many.
    pub async fn clear(&self) -> Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.clear()),
            Self::Redis(r) => r.clear().await,
        }
    }

    /// How many keys the store holds (Redis: `DBSIZE`, so use a database of its own).
    pub async fn key_count(&self) -> Result<u64> {
        match self {
            Self::Memory(m) => Ok(m.key_count()),
            Self::Redis(r) => r.key_count().await,
        }
    }
}

/// The in-memory store: a sorted map behind a lock; a transaction holds the lock throughout.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<String, String>>,
    ops: OpCounts,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        // No code panics while holding this lock; a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, txs: &[Tx]) -> Result<Vec<Option<String>>> {
        let mut map = self.lock();
        let mut failure = None;
        let mut swapped = Vec::new();
        for tx in txs {
            // As in Redis' EXEC: a write that fails (INCRBY of a non-integer) is reported,
            // the transaction's other writes still apply, and nothing else sees it half done.
            for w in &tx.writes {
                match w {
                    Write::Set(k, v) => {
                        map.insert(k.clone(), v.clone());
                    }
                    Write::IncrBy(k, by) => match map.get(k).map(|v| v.parse::<i64>()) {
                        Some(Err(_)) => {
                            failure.get_or_insert_with(|| Error::StoreCorrupt(format!(
                                "a write inside EXEC failed: INCRBY {k}: value is not an integer"
                            )));
                        }
                        now => {
                            let now = now.and_then(|r| r.ok()).unwrap_or(0);
                            map.insert(k.clone(), now.saturating_add(*by).to_string());
                        }
                    },
                    Write::Delete(k) => {
                        map.remove(k);
                    }
                    Write::Swap(k, v) => swapped.push(map.insert(k.clone(), v.clone())),
                }
            }
            self.ops.count(tx);
        }
        failure.map_or(Ok(swapped), Err)
    }

    fn get_many(&self, keys: &[String]) -> Vec<Option<String>> {
        self.ops.get.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let map = self.lock();
        keys.iter().map(|k| map.get(k).cloned()).collect()
    }

    fn dump(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    fn clear(&self) -> u64 {
        let mut map = self.lock();
        let n = map.len() as u64;
        map.clear();
        self.ops.delete.fetch_add(n, Ordering::Relaxed);
        n
    }

    fn key_count(&self) -> u64 {
        self.lock().len() as u64
    }
}

/// The Redis store: one multiplexed connection that reconnects by itself.
pub struct RedisStore {
    conn: ConnectionManager,
    describe: String,
    ops: OpCounts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.describe)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let info = client.get_connection_info();
        let describe = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
            .set_number_of_retries(REDIS_RECONNECT_RETRIES);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            describe,
            ops: OpCounts::default(),
        })
    }

    async fn commit(&self, txs: &[Tx]) -> Result<Vec<Option<String>>> {
        let mut conn = self.conn.clone();
        let mut swapped = Vec::new();
        let mut start = 0;
        while start < txs.len() {
            // One pipeline of whole transactions, up to about PIPELINE_COMMANDS_MAX commands.
            let mut end = start;
            let mut commands = 0;
            let mut pipe = redis::pipe();
            while end < txs.len() && (end == start || commands < PIPELINE_COMMANDS_MAX) {
                pipe.cmd("MULTI").ignore();
                for w in &txs[end].writes {
                    match w {
                        Write::Set(k, v) => pipe.cmd("SET").arg(k).arg(v).ignore(),
                        Write::IncrBy(k, by) => pipe.cmd("INCRBY").arg(k).arg(*by).ignore(),
                        Write::Delete(k) => pipe.cmd("DEL").arg(k).ignore(),
                        Write::Swap(k, v) => pipe.cmd("SET").arg(k).arg(v).arg("GET").ignore(),
                    };
                }
                // EXEC's answer holds each queued command's outcome.
                pipe.cmd("EXEC");
                commands += txs[end].writes.len() + 2;
                end += 1;
            }
            let answers: Vec<redis::Value> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| exec_error(e.to_string()).unwrap_or(Error::Redis(e)))?;
            for (tx, answer) in txs[start..end].iter().zip(&answers) {
                let items = exec_items(answer)?;
                for (w, item) in tx.writes.iter().zip(items) {
                    if let Write::Swap(..) = w {
                        swapped.push(match item {
                            redis::Value::Nil => None,
                            other => Some(
                                redis::from_redis_value_ref::<String>(other)
                                    .map_err(|e| Error::Store(e.to_string()))?,
                            ),
                        });
                    }
                }
            }
            start = end;
        }
        for tx in txs {
            self.ops.count(tx);
        }
        Ok(swapped)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        self.gets(keys, false).await
    }

    async fn get_atomic(&self, keys: &[String]) -> Result<Vec<Option<String>>> {
        self.gets(keys, true).await
    }

    /// One `GET` per key in one round trip; `atomic`: inside one `MULTI`/`EXEC`.
    async fn gets(&self, keys: &[String], atomic: bool) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        for k in keys {
            pipe.cmd("GET").arg(k);
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        self.ops.get.fetch_add(keys.len() as u64, Ordering::Relaxed);
        Ok(values)
    }

    async fn keys(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for pattern in KEY_PATTERNS {
            let mut cursor: u64 = 0;
            loop {
                let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_PAGE_KEYS)
                    .query_async(&mut conn)
                    .await?;
                out.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn dump(&self) -> Result<BTreeMap<String, String>> {
        let keys = self.keys().await?;
        let mut out = BTreeMap::new();
        for page in keys.chunks(SCAN_PAGE_KEYS) {
            let values = self.get_many(page).await?;
            for (k, v) in page.iter().zip(values) {
                if let Some(v) = v {
                    out.insert(k.clone(), v);
                }
            }
        }
        Ok(out)
    }

    async fn clear(&self) -> Result<u64> {
        let keys = self.keys().await?;
        let mut conn = self.conn.clone();
        let mut n = 0;
        for page in keys.chunks(SCAN_PAGE_KEYS) {
            let mut pipe = redis::pipe();
            for k in page {
                pipe.cmd("UNLINK").arg(k);
            }
            let deleted: Vec<u64> = pipe.query_async(&mut conn).await?;
            n += deleted.iter().sum::<u64>();
        }
        self.ops.delete.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    async fn key_count(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("DBSIZE").query_async(&mut conn).await?)
    }
}

/// A write refused because a key holds a value of the wrong kind (`WRONGTYPE`, INCRBY of a
/// non-integer): damage to one of the surface's own keys, so the surface is rebuilt. Other
/// failures (out of memory, a lost connection) are retried as they are.
fn exec_error(reason: String) -> Option<Error> {
    let text = reason.to_ascii_lowercase();
    (text.contains("wrongtype") || text.contains("not an integer"))
        .then(|| Error::StoreCorrupt(format!("a write inside EXEC failed: {reason}")))
}

/// The items of an `EXEC` answer; fails if one holds an error (a queued command that failed
/// at run time) or the transaction was aborted.
fn exec_items(answer: &redis::Value) -> Result<&[redis::Value]> {
    match answer {
        redis::Value::Array(items) => {
            for item in items {
                if let redis::Value::ServerError(e) = item {
                    let reason = format!("{e:?}");
                    return Err(exec_error(reason.clone()).unwrap_or_else(|| {
                        Error::Store(format!("a write inside EXEC failed: {reason}"))
                    }));
                }
            }
            Ok(items)
        }
        redis::Value::Nil => Err(Error::Store("a transaction was aborted".into())),
        other => Err(Error::Store(format!("unexpected EXEC answer {other:?}"))),
    }
}
