//! `symphainy-tests`: end-to-end tests against a real server, and their fixtures: a server
//! on port 0 (in-process, or the real binary as a child process for crash tests), tenants with
//! tokens, and data directories.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use symphainy_sdk::{Client, Intent};
use symphainy_server::{Running, ServerConfig};

/// A server running inside the test process, on its own data directory.
#[derive(Debug)]
pub struct TestServer {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub base: String,
}

impl TestServer {
    /// Starts a server on a fresh data directory and a free port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], letting the test adjust the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = ServerConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse()?);
        config.wal.segment_bytes = 4 * 1024 * 1024;
        config.wal.record_bytes_max = 2 * 1024 * 1024;
        adjust(&mut config);
        let running = symphainy_server::start(config).await?;
        let base = format!("http://{}", running.addr);
        Ok(Self { running, dir, base })
    }

    /// A server with some of its limits changed (the rest as in [`TestServer::start`]).
    pub async fn with_limits(
        adjust: impl FnOnce(&mut symphainy_server::app::Limits),
    ) -> anyhow::Result<Self> {
        Self::start_with(|c| adjust(&mut c.limits)).await
    }

    /// A client with the admin token.
    pub fn admin(&self) -> Client {
        Client::new(&self.base, &self.running.admin_token)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a tenant and returns a client with a token of its user `alice`.
    pub async fn tenant(&self, tenant_id: &str) -> anyhow::Result<Client> {
        new_tenant(&self.admin(), &self.base, tenant_id).await
    }
}

/// Creates `tenant_id` through `admin` and returns a client of `base` with a token of its
/// user `alice`.
async fn new_tenant(admin: &Client, base: &str, tenant_id: &str) -> anyhow::Result<Client> {
    admin.create_tenant(tenant_id).await?;
    let token = admin.issue_token(tenant_id, "alice", 3600).await?;
    Ok(Client::new(base, &token.token))
}

/// The server binary on `data_dir` and a free port, with text logs at `warn`.
fn server_command(data_dir: &Path) -> anyhow::Result<Command> {
    let mut command = Command::new(server_binary()?);
    command
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn");
    Ok(command)
}

/// The server binary: `SYMPHAINY_SERVER_BIN` when set, else this package's `test-server`
/// (the same code as `symphainy-server`), which Cargo builds for these tests.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("SYMPHAINY_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    let binary = dir.join("test-server");
    anyhow::ensure!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p symphainy-tests --bins`",
        binary.display()
    );
    Ok(binary)
}

/// The real server binary as a child process.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    pub admin_token: String,
    /// The last lines the server wrote to stdout (its log), shown when it ends abnormally.
    output: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

/// Lines of a child server's output kept for diagnostics.
const SERVER_OUTPUT_LINES_KEPT: usize = 40;

/// Reads `lines` to their end on a thread of its own, keeping the last
/// [`SERVER_OUTPUT_LINES_KEPT`] in `kept`.
fn keep_tail(
    lines: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
    kept: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
) {
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() == SERVER_OUTPUT_LINES_KEPT {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}

impl ServerProcess {
    /// The admin client, and the client of a new tenant `tenant_id` (user `alice`) with a
    /// new session's id.
    pub async fn tenant_with_session(
        &self,
        tenant_id: &str,
    ) -> anyhow::Result<(Client, Client, String)> {
        let admin = Client::new(&self.base, &self.admin_token);
        let client = new_tenant(&admin, &self.base, tenant_id).await?;
        let session = client
            .create_session(serde_json::json!({}))
            .await?
            .session_id;
        Ok((admin, client, session))
    }

    /// Starts the binary on `data_dir` and a free port; waits until it prints its address.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with_args(data_dir, &[])
    }

    /// Like [`ServerProcess::start`], with more command-line arguments.
    pub fn start_with_args(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = server_command(data_dir)?
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning symphainy-server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let stderr = child.stderr.take().context("server stderr")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("the server exited before listening")??;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse::<SocketAddr>()?;
            }
        };
        // Keep draining stdout and stderr (the log) so the child never blocks on a full pipe;
        // keep their tail.
        let output = std::sync::Arc::new(std::sync::Mutex::new(
            std::collections::VecDeque::with_capacity(SERVER_OUTPUT_LINES_KEPT),
        ));
        keep_tail(lines, output.clone());
        keep_tail(BufReader::new(stderr).lines(), output.clone());
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))?
            .trim()
            .to_string();
        Ok(Self {
            child,
            addr,
            base: format!("http://{addr}"),
            admin_token,
            output,
        })
    }

    /// Runs the binary on `data_dir` expecting it to refuse to start: returns its exit code
    /// and what it wrote to stderr. Fails if it is still running after `timeout` (it is then
    /// killed).
    pub fn refused(data_dir: &Path, timeout: Duration) -> anyhow::Result<(Option<i32>, String)> {
        let mut child = server_command(data_dir)?
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning symphainy-server")?;
        let mut stderr = child.stderr.take().context("server stderr")?;
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        let deadline = std::time::Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                anyhow::bail!("the server was still running after {timeout:?}: it did not refuse");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = reader
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
        Ok((status.code(), text))
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, and wait for a clean exit; returns the exit code.
    pub fn terminate(self) -> anyhow::Result<Option<i32>> {
        self.stop_with("TERM")
    }

    /// Sends `signal` (`TERM`, `INT`, ...) and waits for the exit; returns the exit code
    /// (None: the signal ended the process).
    pub fn stop_with(mut self, signal: &str) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()?;
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                if status.code().is_none() {
                    use std::os::unix::process::ExitStatusExt;
                    let tail = self.output.lock().unwrap_or_else(|e| e.into_inner());
                    eprintln!(
                        "the server ended by signal {:?} after SIG{signal}; its last output:\n{}",
                        status.signal(),
                        tail.iter().cloned().collect::<Vec<_>>().join("\n")
                    );
                }
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        anyhow::bail!("the server did not exit within 10 s of SIG{signal}")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private `redis-server` on a free loopback port, in a temporary directory, persisting
/// nothing; killed when dropped. Tests never share the machine's Redis.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

/// How long a fresh `redis-server` may take to answer `PING`.
const REDIS_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl RedisServer {
    /// Starts one; fails with a clear message when `redis-server` is not installed.
    pub fn start() -> anyhow::Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut server = Self {
                port,
                dir: tempfile::tempdir()?,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                // The port may have been taken between picking and binding: try another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("could not start redis-server")))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context(
                "cannot run redis-server: install it (Debian: apt-get install redis-server) \
                 or run ./scripts/test.sh, which installs it",
            )?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                anyhow::bail!(
                    "redis-server on port {} exited at start: {status}",
                    self.port
                );
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                anyhow::bail!("redis-server on port {} did not answer PING", self.port);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process (SIGSTOP): its connections stay open and nothing is answered, as
    /// with a hung server or a network that drops packets.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("redis-server is not running"))?;
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed: {status}");
        Ok(())
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `--name` on the command line, or `default` (for the benchmark binaries).
pub fn flag(name: &str, default: u64) -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{name} takes a number")),
    }
}

/// A server with some of its limits changed, its tenant `acme`, and a client of `acme`'s user.
pub async fn acme_with_limits(
    adjust: impl FnOnce(&mut symphainy_server::app::Limits),
) -> (TestServer, Client) {
    let server = TestServer::with_limits(adjust)
        .await
        .expect("server started");
    let acme = server.tenant("acme").await.expect("tenant acme");
    (server, acme)
}

/// Runs a 3-step `runtime.echo` of `value` in `session` to its end (it must complete); its
/// execution id.
pub async fn finished_echo(client: &Client, session: &str, value: u32) -> String {
    let payload = serde_json::json!({"value": value, "steps": 3});
    let (_, submitted) = client
        .submit(&Intent::new("runtime.echo", session, payload))
        .await
        .expect("submitted");
    let done = client
        .wait_finished(&submitted.execution_id, Duration::from_secs(10))
        .await
        .expect("finished");
    assert_eq!(done.status, "completed", "{}", submitted.execution_id);
    submitted.execution_id
}
