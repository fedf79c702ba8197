//! The command line of the server: flags (each also an environment variable), logs, the start
//! lines on stdout, and graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use crate::policy;

/// The Symphainy runtime service.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Data directory (WAL, snapshots, keys).
    #[arg(long, env = "SYMPHAINY_DATA_DIR", default_value = "./symphainy-data")]
    data_dir: PathBuf,
    /// Listen address; port 0 picks a free port.
    #[arg(long, env = "SYMPHAINY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Redis URL of the state surface (unset: in memory).
    #[arg(long, env = "SYMPHAINY_REDIS_URL")]
    redis_url: Option<String>,
    /// Admin token (unset: generated and stored in DATA_DIR/admin.token, mode 0600).
    #[arg(long, env = "SYMPHAINY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Policy mode.
    #[arg(long, env = "SYMPHAINY_POLICY", value_enum, default_value_t = policy::Mode::Enforcing)]
    policy: policy::Mode,
    /// Requests per second per tenant (burst twice that).
    #[arg(long, env = "SYMPHAINY_TENANT_RPS", default_value_t = 20_000)]
    tenant_requests_per_sec: u32,
    /// Largest request body in bytes.
    #[arg(long, env = "SYMPHAINY_BODY_BYTES_MAX", default_value_t = 1024 * 1024)]
    body_bytes_max: usize,
    /// Open HTTP connections at most; more wait in the listen backlog until one closes.
    /// Keep it under the process's open-file limit (`ulimit -n`).
    #[arg(long, env = "SYMPHAINY_CONNECTIONS_MAX", default_value_t = 4_096,
          value_parser = clap::value_parser!(u32).range(1..))]
    connections_max: u32,
    /// Longest wait for a request's headers, and for the next request on an idle
    /// connection, in milliseconds; then the connection is closed.
    #[arg(
        long,
        env = "SYMPHAINY_HEADER_READ_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_read_timeout_ms: u64,
    /// Snapshot the state every this many events (0 = never); once the log is four times
    /// that long, when it has grown by a quarter since the last snapshot.
    #[arg(long, env = "SYMPHAINY_SNAPSHOT_EVERY", default_value_t = crate::SNAPSHOT_EVERY_EVENTS_DEFAULT)]
    snapshot_every_events: u64,
    /// An OpenAI-compatible endpoint for `content.analyze` (default: the deterministic
    /// extractive reasoner), e.g. http://127.0.0.1:11434/v1.
    #[arg(long, env = "SYMPHAINY_REASONER_URL")]
    reasoner_url: Option<String>,
    /// The model the reasoner endpoint is asked for.
    #[arg(long, env = "SYMPHAINY_REASONER_MODEL", default_value = "default")]
    reasoner_model: String,
    /// Bearer key for the reasoner endpoint.
    #[arg(long, env = "SYMPHAINY_REASONER_API_KEY", hide_env_values = true)]
    reasoner_api_key: Option<String>,
    /// Policy: skip the citation check of `content.analyze` (claims are then reported
    /// unvalidated).
    #[arg(long, env = "SYMPHAINY_NO_CLAIM_VALIDATION")]
    no_claim_validation: bool,
    /// Never serve the UI's dev sign-in (otherwise on when the server listens on loopback
    /// and generated its admin token, i.e. on its embedded defaults).
    #[arg(long, env = "SYMPHAINY_NO_DEV_SIGNIN")]
    no_dev_signin: bool,
    /// Log format.
    #[arg(long, env = "SYMPHAINY_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

fn init_logs(format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    std::panic::set_hook(Box::new(log_panic));
}

/// Panics are logged as one error event in the log's format (thread, location, message, and
/// a backtrace when `RUST_BACKTRACE` asks for one) instead of the default hook's plain text,
/// which a reader of JSON logs cannot parse. A panic the code catches (a file parser's) is
/// logged the same way; what happens after the hook does not change.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let thread = std::thread::current();
    let thread = thread.name().unwrap_or("unnamed");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let message = info
        .payload_as_str()
        .unwrap_or("(a panic without a text message)");
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(thread, location, panic = message, %backtrace, "a thread panicked");
    } else {
        tracing::error!(thread, location, panic = message, "a thread panicked");
    }
}

/// SIGTERM and SIGINT, caught from the moment this is created: created before the server
/// starts listening, so a signal that comes as soon as it serves (a supervisor stopping it
/// right away) is a graceful shutdown, not the default action's abrupt end. One that comes
/// during recovery is acted on as soon as recovery is done.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Parses the command line and serves until SIGTERM/SIGINT (the `symphainy-server` binary).
pub async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(&args.log_format);
    let mut config = crate::ServerConfig::new(args.data_dir, args.listen);
    config.redis_url = args.redis_url;
    config.dev_signin =
        !args.no_dev_signin && args.admin_token.is_none() && args.listen.ip().is_loopback();
    config.admin_token = args.admin_token;
    config.policy = policy::Policy { mode: args.policy };
    config.limits.tenant_requests_per_sec = args.tenant_requests_per_sec;
    config.limits.body_bytes_max = args.body_bytes_max;
    config.limits.connections_max = args.connections_max as usize;
    config.limits.header_read_timeout_ms = args.header_read_timeout_ms;
    config.snapshot_every_events = args.snapshot_every_events;
    config.validate_claims = !args.no_claim_validation;
    if let Some(url) = &args.reasoner_url {
        config.reasoner = std::sync::Arc::new(crate::reasoner::HttpReasoner::new(
            url,
            &args.reasoner_model,
            args.reasoner_api_key.clone(),
        )?);
    }
    let signals = ShutdownSignals::install()?;
    let running = crate::start(config).await?;
    println!("listening on http://{}", running.addr);
    println!("admin UI: http://{}/ui", running.addr);
    if running.state.dev_signin {
        println!("dev sign-in: on (tenant `dev`; loopback only; --no-dev-signin turns it off)");
    }
    match &running.admin_token_file {
        Some(path) => println!("admin token: in {}", path.display()),
        None => println!("admin token: as given by --admin-token"),
    }
    println!(
        "state surface: {}",
        running.state.projections.store.describe()
    );
    signals.received().await;
    tracing::info!("shutting down: no new requests; in-flight requests finish");
    running.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    // A panic becomes one JSON log line naming the thread, the location and the message.
    #[test]
    fn panics_are_logged_as_json_events() {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let thread = std::thread::Builder::new()
            .name("parser-under-test".into())
            .spawn(move || {
                tracing::subscriber::with_default(subscriber, || {
                    let previous = std::panic::take_hook();
                    std::panic::set_hook(Box::new(super::log_panic));
                    let caught = std::panic::catch_unwind(|| panic!("bad input {}", 42));
                    std::panic::set_hook(previous);
                    assert!(caught.is_err());
                })
            })
            .unwrap();
        thread.join().unwrap();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["level"], "ERROR", "{text}");
        let fields = &line["fields"];
        assert_eq!(fields["message"], "a thread panicked", "{text}");
        assert_eq!(fields["panic"], "bad input 42", "{text}");
        assert_eq!(fields["thread"], "parser-under-test", "{text}");
        assert!(
            fields["location"].as_str().unwrap().contains("cli.rs"),
            "{text}"
        );
    }
}
