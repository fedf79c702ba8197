//! `symphainy-tests`: end-to-end tests against a real server, and their fixtures: a server
//! on port 0 (in-process, or the real binary as a child process for crash tests), tenants with
//! tokens, and data directories.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use symphainy_sdk::Client;
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
        let admin = self.admin();
        admin.create_tenant(tenant_id).await?;
        let token = admin.issue_token(tenant_id, "alice", 3600).await?;
        Ok(Client::new(&self.base, &token.token))
    }
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
}

impl ServerProcess {
    /// Starts the binary on `data_dir` and a free port; waits until it prints its address.
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(server_binary()?)
            .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning symphainy-server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("the server exited before listening")??;
            if let Some(addr) = line.strip_prefix("listening on http://") {
                break addr.parse::<SocketAddr>()?;
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))?
            .trim()
            .to_string();
        Ok(Self {
            child,
            addr,
            base: format!("http://{addr}"),
            admin_token,
        })
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, and wait for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        anyhow::bail!("the server did not exit within 10 s of SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
