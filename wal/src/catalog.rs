//! What readers share with the writer: the list of segments with their sparse indexes, and the
//! durable LSN (a watch channel, so tailing consumers wake when it advances).

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::Lsn;
use crate::fs::FileSystem;

/// One segment as readers see it.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// LSN of its first record.
    pub base_lsn: Lsn,
    /// File name in the log directory.
    pub name: String,
    /// Size of the segment file (header included).
    pub segment_bytes: u64,
    /// Sparse index of (LSN, frame offset), ascending.
    pub index: Vec<(Lsn, u64)>,
}

impl SegmentInfo {
    /// The best offset to start scanning for `lsn`: (first LSN there, offset).
    pub fn seek(&self, lsn: Lsn) -> (Lsn, u64) {
        let at = self.index.partition_point(|&(l, _)| l <= lsn);
        if at == 0 {
            (self.base_lsn, crate::format::SEGMENT_HEADER_BYTES as u64)
        } else {
            self.index[at - 1]
        }
    }
}

/// The shared catalog of a log directory.
#[derive(Debug)]
pub struct Catalog {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    pub(crate) record_bytes_max: u32,
    segments: RwLock<Vec<SegmentInfo>>,
    durable: watch::Sender<Lsn>,
}

impl Catalog {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        record_bytes_max: u32,
        segments: Vec<SegmentInfo>,
        durable: Lsn,
    ) -> Self {
        let (durable, _) = watch::channel(durable);
        Self {
            fs,
            dir,
            record_bytes_max,
            segments: RwLock::new(segments),
            durable,
        }
    }

    /// The last durable LSN (0 when the log is empty).
    pub fn durable_lsn(&self) -> Lsn {
        *self.durable.borrow()
    }

    /// A receiver that is notified whenever the durable LSN advances.
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.durable.subscribe()
    }

    /// Advances the durable LSN; never moves it back (the encoder and the syncer both
    /// publish, and the later of two publications may carry the lower LSN).
    pub(crate) fn publish_durable(&self, lsn: Lsn) {
        self.durable.send_if_modified(|durable| {
            let advanced = lsn > *durable;
            if advanced {
                *durable = lsn;
            }
            advanced
        });
    }

    pub(crate) fn segments(&self) -> RwLockReadGuard<'_, Vec<SegmentInfo>> {
        // Writers of this lock never panic while holding it; recover the data if one did.
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn segments_mut(&self) -> RwLockWriteGuard<'_, Vec<SegmentInfo>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The segment holding `lsn` and where to start scanning for it.
    pub(crate) fn locate(&self, lsn: Lsn) -> Option<(SegmentInfo, Lsn, u64)> {
        let segments = self.segments();
        let at = segments.partition_point(|s| s.base_lsn <= lsn);
        let segment = segments.get(at.checked_sub(1)?)?;
        let (first, offset) = segment.seek(lsn);
        let info = SegmentInfo {
            index: Vec::new(),
            ..segment.clone()
        };
        Some((info, first, offset))
    }

    /// Names and sizes of all segments, oldest first.
    pub fn segment_list(&self) -> Vec<(Lsn, String)> {
        self.segments()
            .iter()
            .map(|s| (s.base_lsn, s.name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two threads publish the durable LSN; a late publication of a lower one changes nothing
    // and wakes nobody.
    #[test]
    fn the_durable_lsn_never_moves_back() {
        let catalog = Catalog::new(
            Arc::new(crate::MemFs::new()),
            PathBuf::from("/wal"),
            1024,
            Vec::new(),
            3,
        );
        let mut watcher = catalog.subscribe();
        catalog.publish_durable(9);
        assert!(watcher.has_changed().unwrap());
        watcher.mark_unchanged();
        catalog.publish_durable(7);
        assert_eq!(catalog.durable_lsn(), 9);
        assert!(!watcher.has_changed().unwrap());
        catalog.publish_durable(9);
        assert!(!watcher.has_changed().unwrap());
        catalog.publish_durable(10);
        assert_eq!(catalog.durable_lsn(), 10);
    }
}
