//! A content-addressed blob store: `DIR/<first two hex digits>/<sha256 hex>`. A blob is
//! written to a temporary file, fsynced, renamed into place and its directory fsynced before
//! `put` returns, so an event that names a blob's hash is only appended once the bytes are
//! durable. Blobs are immutable; writing one twice is a no-op.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Largest blob the store accepts (a file upload), 64 MiB.
pub const BLOB_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What can go wrong with a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{0:?} is not a sha256 hex digest")]
    BadHash(String),
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob {sha256} is corrupt: its bytes hash to {actual}")]
    Corrupt { sha256: String, actual: String },
    /// The I/O error is part of the message (so not also the source).
    #[error("blob store I/O ({what}): {error}")]
    Io { what: String, error: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
    let what = what.into();
    move |error| BlobError::Io { what, error }
}

/// Suffix of a blob being written (its name is `.<sha256>.<pid>.tmp`).
const TEMP_SUFFIX: &str = ".tmp";

/// The sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What [`BlobStore::sweep`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Temp files of writes a crash cut short.
    pub temp_files: usize,
    /// Blobs no logged event names.
    pub unreferenced: usize,
}

/// The store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        if sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(BlobError::BadHash(sha256.to_string()));
        }
        Ok(self.dir.join(&sha256[..2]).join(sha256))
    }

    /// Removes, in one pass over the store, what nothing will read: the temp files of writes
    /// a crash cut short, and the blobs `keep` does not name whose files are older than
    /// `grace` (what an upload cut short left: its bytes stored, its intent never logged; the
    /// grace keeps a directory whose log was lost or replaced from being emptied at once).
    /// Only for the process that owns the data directory, before it runs anything that writes
    /// blobs (the server at start, after recovery): another process's write in progress, or
    /// an upload's blob before its intent is logged, would look the same.
    pub fn sweep(&self, keep: &std::collections::BTreeSet<String>, grace: Duration) -> Swept {
        let now = std::time::SystemTime::now();
        let mut swept = Swept::default();
        for shard in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let count = if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                    &mut swept.temp_files
                } else if self.path(name).is_ok() && !keep.contains(name) {
                    let old_enough = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|at| now.duration_since(at).ok())
                        .is_some_and(|age| age >= grace);
                    if !old_enough {
                        continue;
                    }
                    &mut swept.unreferenced
                } else {
                    continue;
                };
                if std::fs::remove_file(entry.path()).is_ok() {
                    *count += 1;
                }
            }
        }
        swept
    }

    /// Stores `bytes` durably; returns their sha256.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        if bytes.len() > BLOB_BYTES_MAX {
            return Err(BlobError::TooLarge {
                size: bytes.len(),
                limit: BLOB_BYTES_MAX,
            });
        }
        let sha = sha256_hex(bytes);
        let path = self.path(&sha)?;
        if path.exists() {
            return Ok(sha);
        }
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.clone());
        std::fs::create_dir_all(&parent).map_err(io(format!("creating {}", parent.display())))?;
        let tmp = parent.join(format!(".{sha}.{}{TEMP_SUFFIX}", std::process::id()));
        // A failed write leaves no partial file behind to fill a full disk further.
        crate::file::write_atomically(&tmp, &path, &[bytes], 0o644)
            .map_err(io(format!("writing {}", path.display())))?;
        Ok(sha)
    }

    /// The bytes of a blob, checked against their hash.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(sha256)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(sha256.to_string()));
            }
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(BlobError::Corrupt {
                sha256: sha256.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub fn contains(&self, sha256: &str) -> bool {
        self.path(sha256).is_ok_and(|p| p.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(store: &BlobStore, sha: &str, by: std::time::Duration) {
        let file = std::fs::File::options()
            .write(true)
            .open(store.path(sha).unwrap())
            .unwrap();
        file.set_modified(std::time::SystemTime::now() - by)
            .unwrap();
    }

    // Only blobs that are neither named nor young go; other files are never touched.
    #[test]
    fn unreferenced_blobs_past_the_grace_period_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let hour = std::time::Duration::from_secs(3600);
        let named = store.put(b"named").unwrap();
        let orphan = store.put(b"orphan").unwrap();
        let young = store.put(b"young orphan").unwrap();
        age(&store, &named, 2 * hour);
        age(&store, &orphan, 2 * hour);
        let stranger = dir.path().join(&orphan[..2]).join("notes.txt");
        std::fs::write(&stranger, b"not a blob").unwrap();
        let keep = std::collections::BTreeSet::from([named.clone()]);

        assert_eq!(store.sweep(&keep, hour).unreferenced, 1);
        assert!(store.contains(&named));
        assert!(!store.contains(&orphan));
        assert!(store.contains(&young));
        assert!(stranger.exists());
        assert_eq!(store.sweep(&keep, hour), Swept::default());
    }

    #[test]
    fn put_get_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let sha = store.put(b"hello").unwrap();
        assert_eq!(sha, sha256_hex(b"hello"));
        assert_eq!(store.put(b"hello").unwrap(), sha);
        assert_eq!(store.get(&sha).unwrap(), b"hello");
        assert!(matches!(
            store.get(&sha256_hex(b"other")),
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.get("../etc/passwd"),
            Err(BlobError::BadHash(_))
        ));
        std::fs::write(dir.path().join(&sha[..2]).join(&sha), b"hellO").unwrap();
        assert!(matches!(store.get(&sha), Err(BlobError::Corrupt { .. })));
    }

    // Temp files a crash left behind go at the owner's start; blobs stay.
    #[test]
    fn leftovers_of_cut_short_writes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let sha = store.put(b"kept").unwrap();
        let shard = dir.path().join(&sha[..2]);
        let leftover = shard.join(format!(".{sha}.4242.tmp"));
        std::fs::write(&leftover, b"ke").unwrap();
        let keep = std::collections::BTreeSet::from([sha.clone()]);
        let swept = store.sweep(&keep, Duration::ZERO);
        assert_eq!((swept.temp_files, swept.unreferenced), (1, 0));
        assert!(!leftover.exists());
        assert_eq!(store.get(&sha).unwrap(), b"kept");
        assert_eq!(store.sweep(&keep, Duration::ZERO), Swept::default());
    }
}
