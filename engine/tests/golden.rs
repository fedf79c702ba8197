//! The format-compatibility guard: logs written by earlier versions of the code (committed
//! under `tests/golden/`) must still open, decode and replay to the digest recorded with them.

use std::collections::BTreeSet;
use std::path::Path;

use symphainy_engine::event::EventType;
use symphainy_engine::{codec, digest, runtime};
use symphainy_wal::WalReader;

fn expected(dir: &Path) -> (u64, u64, String) {
    let text = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    (
        field("lsn").parse().unwrap(),
        field("events").parse().unwrap(),
        field("digest"),
    )
}

// Every committed golden log replays to its committed digest and covers every event type.
#[test]
fn golden_logs_replay_to_their_digest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let (lsn, events, want) = expected(&dir);
        let reader = WalReader::open(dir.join("wal")).unwrap();
        assert_eq!(reader.last_lsn(), lsn, "{}", dir.display());
        let (state, applied) = runtime::replay_cursor(&mut reader.cursor(1), None).unwrap();
        assert_eq!(applied, events);
        assert_eq!(state.rejected_events, 0);
        assert_eq!(
            digest::digest(&state),
            want,
            "{} replays to another digest",
            dir.display()
        );
        let mut types = BTreeSet::new();
        reader
            .cursor(1)
            .visit(usize::MAX, |_, meta, payload| {
                types.insert(codec::decode(meta, payload).unwrap().body.event_type());
            })
            .unwrap();
        assert_eq!(
            types,
            EventType::ALL.into_iter().collect(),
            "golden log misses event types"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no golden logs found");
}
