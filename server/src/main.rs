//! `symphainy-server`: the runtime service (HTTP + WebSocket API, admin UI, metrics).
//! It will be the only crate that knows HTTP and JSON.

fn main() {
    println!("symphainy-server: not yet serving");
}
