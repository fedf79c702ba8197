//! `symphainy-server`: the runtime service — the experience plane. It is the only crate that
//! knows HTTP and JSON: it authenticates callers, turns requests into runtime commands and
//! reads projections; it runs no business logic.

pub mod app;
pub mod auth;
pub mod cli;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod reasoner;
pub mod routes;
pub mod serve;
pub mod views;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use symphainy_engine::agents::{ExtractiveReasoner, Reasoner};
use symphainy_engine::id::{SystemClock, UlidSource};
use symphainy_engine::realms::content::ContentRealm;
use symphainy_engine::realms::content::blob::BlobStore;
use symphainy_engine::realms::content::embed::{Embedder, FeatureHashEmbedder};
use symphainy_engine::{Runtime, RuntimeConfig, default_registry, snapshot};
use symphainy_projections::content::ContentIndex;
use symphainy_wal::{Config as WalConfig, RealFs, Wal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{AppState, Limits};
use crate::auth::Keys;
use crate::policy::Policy;

/// Default snapshot interval, in events.
pub const SNAPSHOT_EVERY_EVENTS_DEFAULT: u64 = 1_000_000;

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub redis_url: Option<String>,
    pub admin_token: Option<String>,
    /// Serve `POST /ui/dev-signin`, which hands the UI a token of the `dev` tenant without a
    /// pasted token. Only for a server on its embedded defaults (loopback, generated admin
    /// token); `main` decides, the default is off.
    pub dev_signin: bool,
    pub limits: Limits,
    pub policy: Policy,
    pub runtime: RuntimeConfig,
    pub wal: WalConfig,
    /// Snapshot every this many events; 0 disables snapshots.
    pub snapshot_every_events: u64,
    /// The reasoner of `content.analyze` (default: the deterministic extractive one).
    pub reasoner: Arc<dyn Reasoner>,
    /// Policy: `content.analyze` validates every claim's citations (default on).
    pub validate_claims: bool,
}

impl ServerConfig {
    /// Embedded defaults with the given data directory and listen address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            redis_url: None,
            admin_token: None,
            dev_signin: false,
            limits: Limits::default(),
            policy: Policy::default(),
            runtime: RuntimeConfig::default(),
            wal: WalConfig::default(),
            snapshot_every_events: SNAPSHOT_EVERY_EVENTS_DEFAULT,
            reasoner: Arc::new(ExtractiveReasoner),
            validate_claims: true,
        }
    }
}

/// A server that is serving.
#[derive(Debug)]
pub struct Running {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The admin token.
    pub admin_token: String,
    /// Where the admin token is stored (None when given on the command line).
    pub admin_token_file: Option<PathBuf>,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _snapshotter: Option<snapshot::Snapshotter>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), and returns.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(signal) = self.shutdown.take() {
            let _ = signal.send(());
        }
        match tokio::time::timeout(app::SHUTDOWN_GRACE, &mut self.task).await {
            Ok(joined) => joined.context("server task")?.context("serving")?,
            Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
        }
        self.state.projections.stop().await;
        Ok(())
    }
}

/// Recovers the data directory and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let given_token = config.admin_token.is_some();
    let (keys, admin_token) = Keys::load(&data_dir, config.admin_token.clone())?;
    let wal_dir = data_dir.join("wal");
    let snapshot_dir = data_dir.join("snapshots");
    let wal_config = config.wal.clone();
    let (wal, state) = tokio::task::spawn_blocking({
        let (wal_dir, snapshot_dir) = (wal_dir.clone(), snapshot_dir.clone());
        move || {
            snapshot::recover(Some(&snapshot_dir), |visit| {
                Ok(Wal::open_visiting(
                    Arc::new(RealFs),
                    &wal_dir,
                    wal_config,
                    |l, m, p| visit(l, m, p),
                )?)
            })
        }
    })
    .await
    .context("recovery task")?
    .with_context(|| {
        format!(
            "recovering {} (nothing was changed; `replay-tool verify --data-dir {}` reports on \
             the log)",
            wal_dir.display(),
            data_dir.display()
        )
    })?;
    let wal = Arc::new(wal);
    // Snapshots are spaced from the newest one on disk, not from the recovered state: a log
    // recovered with a long tail past its snapshot (or none) gets one as soon as it is due.
    let snapshotter = (config.snapshot_every_events > 0).then(|| {
        let newest = snapshot::newest_lsn(&snapshot_dir).unwrap_or(0);
        snapshot::Snapshotter::start(
            wal.clone(),
            newest.min(state.last_lsn),
            snapshot_dir,
            config.snapshot_every_events,
        )
    });
    let clock = Arc::new(SystemClock);
    let blobs = BlobStore::new(data_dir.join("blobs"));
    // This process holds the log's lock and nothing writes blobs yet (sagas resume below):
    // temp files are writes a crash cut short, blobs no logged event names uploads cut short.
    let swept = blobs.sweep(
        &symphainy_engine::realms::content::referenced_blobs(&state),
        symphainy_engine::realms::content::BLOB_ORPHAN_GRACE,
    );
    if swept != Default::default() {
        tracing::info!(
            temp_files = swept.temp_files,
            unreferenced_blobs = swept.unreferenced,
            "removed blob files nothing will read (writes or uploads a crash cut short)"
        );
    }
    let embedder: Arc<dyn Embedder> = Arc::new(FeatureHashEmbedder);
    let content = Arc::new(ContentIndex::new(embedder.clone()));
    let projections = views::Projections::start(
        wal.clone(),
        &state,
        config.redis_url.as_deref(),
        &data_dir.join("graph"),
        &symphainy_engine::id::Clock::now_ms(clock.as_ref()).to_string(),
        content.clone(),
        blobs.clone(),
    )?;
    // Realms are wired in here; the runtime core knows none of them.
    let mut registry = default_registry().context("registering capabilities")?;
    let realm = Arc::new(ContentRealm {
        blobs: blobs.clone(),
        embedder,
        facts: content,
        reasoner: config.reasoner.clone(),
        validate_claims: config.validate_claims,
    });
    realm
        .register(&mut registry)
        .context("registering the content realm")?;
    let registry = Arc::new(registry);
    let runtime = Runtime::start_with_state(
        wal.clone(),
        state,
        registry,
        clock.clone(),
        Arc::new(UlidSource::default()),
        config.runtime.clone(),
    )
    .await
    .context("starting the runtime")?;
    let mut app_state = AppState::new(
        runtime,
        wal,
        projections,
        keys,
        config.limits.clone(),
        config.policy,
        clock,
    );
    app_state.dev_signin = config.dev_signin;
    let state = Arc::new(app_state);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let (shutdown, stop) = oneshot::channel::<()>();
    let router = app::app(state.clone());
    let header_read_timeout =
        std::time::Duration::from_millis(config.limits.header_read_timeout_ms);
    let task = tokio::spawn(serve::serve(
        listener,
        router,
        state.http_connections.clone(),
        header_read_timeout,
        async {
            let _ = stop.await;
        },
    ));
    Ok(Running {
        addr,
        admin_token,
        admin_token_file: (!given_token).then(|| data_dir.join("admin.token")),
        state,
        shutdown: Some(shutdown),
        task,
        _snapshotter: snapshotter,
    })
}
