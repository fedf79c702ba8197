//! `docs/capability_inventory.md` cannot drift from the curator's registry.

// The committed inventory equals the one generated from the registry.
#[test]
fn inventory_matches_registry() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/capability_inventory.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let mut registry = symphainy_engine::default_registry().unwrap();
    symphainy_engine::realms::content::offline_realm("unused")
        .register(&mut registry)
        .unwrap();
    let generated = registry.inventory_markdown();
    assert!(
        committed == generated,
        "docs/capability_inventory.md is stale; regenerate it with\n  cargo run -p symphainy-engine --example inventory > docs/capability_inventory.md"
    );
}
