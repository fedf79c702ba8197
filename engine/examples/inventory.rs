//! Prints the capability inventory (docs/capability_inventory.md) from the curator's registry.
//!
//! cargo run -p symphainy-engine --example inventory > docs/capability_inventory.md

fn main() {
    match symphainy_engine::default_registry() {
        Ok(registry) => print!("{}", registry.inventory_markdown()),
        Err(e) => {
            eprintln!("registry: {e}");
            std::process::exit(1);
        }
    }
}
