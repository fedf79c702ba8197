//! Files written whole or not at all: the one way the engine and the server persist a file
//! outside the log (snapshots, blobs, key files).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `parts`, in order, to `path` through `temp` (created with `mode`): write, fsync,
/// rename, fsync of the directory. On failure the temp file is removed, so a full disk is
/// not filled further by a partial file; after a crash mid-write only `temp` can remain,
/// and `path` is either absent or whole.
pub fn write_atomically(
    temp: &Path,
    path: &Path,
    parts: &[&[u8]],
    mode: u32,
) -> std::io::Result<()> {
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(temp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        std::fs::rename(temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(temp);
        return Err(e);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_or_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (temp, path) = (dir.path().join("f.tmp"), dir.path().join("f"));
        write_atomically(&temp, &path, &[b"ab", b"cd"], 0o600).expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"abcd");
        assert!(!temp.exists());
        // Renaming onto a directory fails: nothing is left behind, the target is untouched.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).expect("dir");
        std::fs::write(blocked.join("x"), b"x").expect("write");
        let temp = dir.path().join("blocked.tmp");
        assert!(write_atomically(&temp, &blocked, &[b"new"], 0o600).is_err());
        assert!(!temp.exists());
        assert!(blocked.join("x").exists());
    }
}
