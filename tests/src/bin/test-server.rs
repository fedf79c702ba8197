//! The server binary, built inside this package so integration tests that spawn and kill a
//! real server process always have it (`CARGO_BIN_EXE_test-server`); same code as
//! `symphainy-server`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    symphainy_server::cli::main().await
}
