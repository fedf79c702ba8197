//! An in-memory file system that models what survives a crash and injects faults.
//!
//! Every file keeps two images: what was written and what was made durable by `sync_data`.
//! Directory entries likewise become durable only on `sync_dir`. [`MemFs::crash`] throws away
//! everything that was not durable (optionally keeping a random subset of unsynced 512-byte
//! sectors, a torn write) and invalidates every handle opened before it, as a dead process's
//! handles would be. Faults: failing writes (e.g. a full disk) and failing fsyncs.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{DirLock, FileHandle, FileSystem, LockFailure};

/// Sector size used to model torn writes.
pub const SECTOR_BYTES: usize = 512;

/// What a crash keeps of data that was written but not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// Each unsynced sector is kept or lost at random (seeded), as a torn write would leave it.
    TornSectors {
        /// Seed of the sector choice.
        seed: u64,
    },
}

#[derive(Debug, Default)]
struct MemFile {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<PathBuf, Arc<Mutex<MemFile>>>,
    durable_entries: HashMap<PathBuf, Arc<Mutex<MemFile>>>,
    locks: HashSet<PathBuf>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    generation: AtomicU64,
    /// Writes that may still succeed before every later one fails; negative = never fail.
    writes_until_failure: AtomicI64,
    /// Syncs that may still succeed before every later one fails; negative = never fail.
    syncs_until_failure: AtomicI64,
}

/// The in-memory, fault-injecting file system. Clones share the same files.
#[derive(Clone, Debug)]
pub struct MemFs {
    shared: Arc<Shared>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock can only come from a bug in this module; the data is
    // still consistent enough for a test double, so recover the guard.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemFs {
    /// An empty file system with no faults armed.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                generation: AtomicU64::new(0),
                writes_until_failure: AtomicI64::new(-1),
                syncs_until_failure: AtomicI64::new(-1),
            }),
        }
    }

    /// After `n` more successful writes, every write fails (as on a full disk).
    pub fn fail_writes_after(&self, n: i64) {
        self.shared.writes_until_failure.store(n, Ordering::SeqCst);
    }

    /// After `n` more successful syncs, every sync fails.
    pub fn fail_syncs_after(&self, n: i64) {
        self.shared.syncs_until_failure.store(n, Ordering::SeqCst);
    }

    /// Disarms all faults.
    pub fn clear_faults(&self) {
        self.fail_writes_after(-1);
        self.fail_syncs_after(-1);
    }

    /// Simulates power loss: only durable data and directory entries survive, every open handle
    /// and lock dies, and faults are cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = lock(&self.shared.state);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let mut rng = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::TornSectors { seed } => seed | 1,
        };
        let mut survivors = HashMap::new();
        for (path, file) in &state.durable_entries {
            let old = lock(file);
            let mut data = old.durable.clone();
            if matches!(mode, CrashMode::TornSectors { .. }) {
                keep_random_sectors(&mut data, &old.data, &mut rng);
            }
            let fresh = MemFile {
                durable: data.clone(),
                data,
            };
            survivors.insert(path.clone(), Arc::new(Mutex::new(fresh)));
        }
        state.files = survivors.clone();
        state.durable_entries = survivors;
        state.locks.clear();
        drop(state);
        self.clear_faults();
    }

    /// Reads a whole file (test inspection).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = lock(&self.shared.state);
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(lock(file).data.clone())
    }

    /// Replaces a whole file's contents, durably (test corruption).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let state = lock(&self.shared.state);
        let file = state.files.get(path).ok_or_else(|| not_found(path))?;
        let mut file = lock(file);
        file.data = bytes.to_vec();
        file.durable = bytes.to_vec();
        Ok(())
    }

    /// Removes a file durably, as an operator deleting it would (test corruption).
    pub fn remove_file_for_test(&self, path: &Path) {
        let mut state = lock(&self.shared.state);
        state.files.remove(path);
        state.durable_entries.remove(path);
    }

    fn take_budget(counter: &AtomicI64, what: &str) -> io::Result<()> {
        let left = counter.load(Ordering::SeqCst);
        if left < 0 {
            return Ok(());
        }
        if left == 0 {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        counter.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Keeps each differing sector of `written` with probability one half (xorshift, seeded).
fn keep_random_sectors(durable: &mut Vec<u8>, written: &[u8], rng: &mut u64) {
    if written.len() > durable.len() {
        durable.resize(written.len(), 0);
    }
    for start in (0..written.len()).step_by(SECTOR_BYTES) {
        let end = (start + SECTOR_BYTES).min(written.len());
        if durable[start..end] == written[start..end] {
            continue;
        }
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        if *rng & 1 == 1 {
            durable[start..end].copy_from_slice(&written[start..end]);
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn dead_handle() -> io::Error {
    io::Error::other("file handle belongs to a crashed process")
}

#[derive(Debug)]
struct MemHandle {
    fs: MemFs,
    file: Arc<Mutex<MemFile>>,
    generation: u64,
    writable: bool,
}

impl MemHandle {
    fn alive(&self) -> io::Result<()> {
        if self.fs.shared.generation.load(Ordering::SeqCst) == self.generation {
            Ok(())
        } else {
            Err(dead_handle())
        }
    }
}

impl FileHandle for MemHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.alive()?;
        let file = lock(&self.file);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        if start >= file.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(file.data.len() - start);
        buf[..n].copy_from_slice(&file.data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.alive()?;
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only handle",
            ));
        }
        MemFs::take_budget(&self.fs.shared.writes_until_failure, "write")?;
        let mut file = lock(&self.file);
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.alive()?;
        MemFs::take_budget(&self.fs.shared.syncs_until_failure, "fsync")?;
        let mut file = lock(&self.file);
        let file = &mut *file;
        if file.durable.len() != file.data.len() {
            file.durable.resize(file.data.len(), 0);
        }
        // Copy only what differs: segments are large and syncs are frequent.
        let mut start = 0;
        while start < file.data.len() {
            let end = (start + SECTOR_BYTES).min(file.data.len());
            if file.durable[start..end] != file.data[start..end] {
                file.durable[start..end].copy_from_slice(&file.data[start..end]);
            }
            start = end;
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        self.alive()?;
        Ok(lock(&self.file).data.len() as u64)
    }
}

#[derive(Debug)]
struct MemLock {
    fs: MemFs,
    path: PathBuf,
    generation: u64,
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        if self.fs.shared.generation.load(Ordering::SeqCst) == self.generation {
            lock(&self.fs.shared.state).locks.remove(&self.path);
        }
    }
}

impl FileSystem for MemFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.shared.state);
        Ok(state
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let state = lock(&self.shared.state);
        let file = state
            .files
            .get(path)
            .ok_or_else(|| not_found(path))?
            .clone();
        let generation = self.shared.generation.load(Ordering::SeqCst);
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            file,
            generation,
            writable: false,
        }))
    }

    fn open_write(&self, path: &Path, create: bool) -> io::Result<Box<dyn FileHandle>> {
        let mut state = lock(&self.shared.state);
        let file = match state.files.get(path) {
            Some(file) => file.clone(),
            None if create => {
                let file = Arc::new(Mutex::new(MemFile::default()));
                state.files.insert(path.to_path_buf(), file.clone());
                file
            }
            None => return Err(not_found(path)),
        };
        let generation = self.shared.generation.load(Ordering::SeqCst);
        Ok(Box::new(MemHandle {
            fs: self.clone(),
            file,
            generation,
            writable: true,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.shared.state);
        state
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        MemFs::take_budget(&self.shared.syncs_until_failure, "directory fsync")?;
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        state.durable_entries.retain(|p, _| p.parent() != Some(dir));
        for (path, file) in &state.files {
            if path.parent() == Some(dir) {
                state.durable_entries.insert(path.clone(), file.clone());
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> Result<Box<dyn DirLock>, LockFailure> {
        let mut state = lock(&self.shared.state);
        if !state.locks.insert(path.to_path_buf()) {
            return Err(LockFailure::Held);
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        Ok(Box::new(MemLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation,
        }))
    }
}
