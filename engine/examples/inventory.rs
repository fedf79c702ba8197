//! Prints the capability inventory (docs/capability_inventory.md) from the curator's registry
//! as a server builds it (built-in capabilities and the content realm).
//!
//! cargo run -p symphainy-engine --example inventory > docs/capability_inventory.md

fn main() {
    let registry = symphainy_engine::default_registry().and_then(|mut r| {
        symphainy_engine::realms::content::offline_realm("unused").register(&mut r)?;
        Ok(r)
    });
    match registry {
        Ok(registry) => print!("{}", registry.inventory_markdown()),
        Err(e) => {
            eprintln!("registry: {e}");
            std::process::exit(1);
        }
    }
}
