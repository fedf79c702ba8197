//! `symphainy-server`: runs the runtime service. With no arguments it serves on embedded
//! defaults (data in `./symphainy-data`, `127.0.0.1:8080`, in-memory state surface).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    symphainy_server::cli::main().await
}
