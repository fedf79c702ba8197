//! The shape of the log's I/O on a real disk: segments are prepared with zeros (direct I/O
//! where the file system allows it), and every write into a segment covers whole pages, so the
//! kernel never reads a page back from the disk in an append's path. Reopening inside a page
//! and appending keeps every record.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{check_all, record};
use symphainy_wal::fs::{DirLock, FileHandle, LockFailure};
use symphainy_wal::segment::SEGMENT_SUFFIX;
use symphainy_wal::{Config, FileSystem, PAGE_BYTES, RealFs, Wal};

/// The real file system, remembering every write into a segment file: (file, offset, length).
#[derive(Debug, Default, Clone)]
struct Recording {
    writes: Arc<Mutex<Vec<(String, u64, usize)>>>,
}

#[derive(Debug)]
struct RecordingFile {
    name: String,
    inner: Box<dyn FileHandle>,
    writes: Arc<Mutex<Vec<(String, u64, usize)>>>,
}

impl FileHandle for RecordingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.writes
            .lock()
            .unwrap()
            .push((self.name.clone(), offset, buf.len()));
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for Recording {
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn open_read(&self, path: &Path) -> std::io::Result<Box<dyn FileHandle>> {
        RealFs.open_read(path)
    }
    fn open_write(&self, path: &Path, create: bool) -> std::io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(RecordingFile {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            inner: RealFs.open_write(path, create)?,
            writes: self.writes.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> Result<Box<dyn DirLock>, LockFailure> {
        RealFs.try_lock(path)
    }
    // Segments are prepared by the real implementation (direct I/O), not recorded.
    fn write_zeros(&self, path: &Path, bytes: u64) -> std::io::Result<()> {
        RealFs.write_zeros(path, bytes)
    }
}

fn config() -> Config {
    Config {
        // Not a multiple of the page: the last page of a segment is clipped at its end.
        segment_bytes: 64 * 1024 + 100,
        record_bytes_max: 1024,
        ..Config::default()
    }
}

#[test]
fn segment_writes_cover_whole_pages_and_reopening_mid_page_keeps_everything() {
    // On the disk, not in a tmpfs: direct I/O is what is under test.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fs = Recording::default();
    let mut next = 1;
    for round in 0..3 {
        let wal = Wal::open_with(Arc::new(fs.clone()), dir.path(), config()).unwrap();
        // Single appends and small batches of odd sizes: frames end anywhere in a page.
        for i in 0..700u64 {
            let n = if i % 7 == 0 { 3 } else { 1 };
            let records = (next..next + n).map(record).collect();
            let appended = wal.append_blocking(records).unwrap();
            assert_eq!(appended.first, next, "round {round}");
            next += n;
        }
        assert_eq!(check_all(&wal), next - 1, "round {round}");
        wal.close();
    }
    let wal = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(check_all(&wal), next - 1);
    drop(wal);
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(SEGMENT_SUFFIX)
        })
        .count();
    assert!(
        segments > 3,
        "the test must cross segment rollovers: {segments}"
    );

    let writes = fs.writes.lock().unwrap();
    let segment_writes: Vec<_> = writes
        .iter()
        .filter(|(name, ..)| name.ends_with(SEGMENT_SUFFIX) || name.ends_with(".tmp"))
        .collect();
    assert!(segment_writes.len() > 2000, "{}", segment_writes.len());
    let segment_bytes = config().segment_bytes;
    for (name, offset, len) in segment_writes {
        let end = offset + *len as u64;
        // The header, written alone when a segment is created, is the one partial write.
        if *offset == 0 && *len == 64 {
            continue;
        }
        assert_eq!(offset % PAGE_BYTES, 0, "{name}: write at {offset}");
        assert!(
            end.is_multiple_of(PAGE_BYTES) || end == segment_bytes,
            "{name}: write [{offset}, {end}) does not end on a page"
        );
    }
}

fn assert_zeros(path: &Path, bytes: u64) {
    let content = std::fs::read(path).unwrap();
    assert_eq!(content.len() as u64, bytes);
    assert!(content.iter().all(|b| *b == 0));
}

#[test]
fn write_zeros_fills_the_file_on_disk_and_on_tmpfs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Direct I/O for the aligned part, a buffered write for the rest.
    let odd = 3 * 1024 * 1024 + 100;
    let path = dir.path().join("zeros");
    std::fs::write(&path, vec![9u8; 5000]).unwrap();
    RealFs.write_zeros(&path, odd).unwrap();
    assert_zeros(&path, odd);
    // tmpfs refuses direct I/O: the buffered fallback fills it the same.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = dir.path().join("zeros");
        RealFs.write_zeros(&path, odd).unwrap();
        assert_zeros(&path, odd);
    }
}
