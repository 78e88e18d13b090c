//! Files written whole or not at all: the CLI's output, the plugin's take files and its settings file.
//!
//! The content goes to a temporary file in the destination's own folder, is flushed to the disk and then renamed
//! over the destination, so a full disk, a crash or a killed process leaves the old file (or none) in place, never
//! a half-written one — even when the output replaces the input it was computed from.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Writes `path` through `write`, all at once: `write` fills a temporary file beside `path` (creating the folder
/// when it is missing), which is flushed, synced to the disk and renamed over `path`. On any failure — `write`'s own
/// error or the file system's, reported as [`EngineError::Write`] — the temporary file is removed and an existing
/// `path` is left as it was. A replaced file keeps its permissions; a new one gets the usual ones (0666 less the
/// umask on Unix).
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<&mut File>) -> Result<()>) -> Result<()> {
    let failed = |source| EngineError::Write { path: path.to_path_buf(), source };
    let folder = folder_of(path);
    std::fs::create_dir_all(&folder).map_err(failed)?;
    let existing = std::fs::metadata(path).ok().filter(|meta| meta.is_file()).map(|meta| meta.permissions());
    let mut builder = tempfile::Builder::new();
    builder.prefix(".retake-").suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder.tempfile_in(&folder).map_err(failed)?;
    if let Some(permissions) = existing {
        temp.as_file().set_permissions(permissions).map_err(failed)?;
    }
    {
        let mut buffered = BufWriter::new(temp.as_file_mut());
        write(&mut buffered)?;
        buffered.flush().map_err(failed)?;
    }
    temp.as_file().sync_all().map_err(failed)?;
    temp.persist(path).map_err(|e| failed(e.error))?;
    sync_folder(&folder);
    Ok(())
}

/// Writes `bytes` to `path` with [`write_atomically`].
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |file| {
        file.write_all(bytes).map_err(|source| EngineError::Write { path: path.to_path_buf(), source })
    })
}

/// Checks, before any work is done for it, that `path` can be written: its folder exists and takes a new file,
/// and `path` is not itself a folder. Errors name the path and say what to do.
pub fn check_writable(path: &Path) -> Result<()> {
    let folder = folder_of(path);
    let refuse = |kind: std::io::ErrorKind, what: String| EngineError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::new(kind, format!("{what}; pick another output path")),
    };
    match std::fs::metadata(&folder) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(refuse(std::io::ErrorKind::NotADirectory, format!("`{}` is not a folder", folder.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let what = format!("the folder `{}` does not exist (create it first)", folder.display());
            return Err(refuse(std::io::ErrorKind::NotFound, what));
        }
        Err(source) => return Err(EngineError::Write { path: path.to_path_buf(), source }),
    }
    if path.is_dir() {
        return Err(refuse(std::io::ErrorKind::IsADirectory, "it is a folder".into()));
    }
    // The one way to know the folder takes a file (permissions, read-only mounts, ACLs): make one, removed on drop.
    tempfile::Builder::new()
        .prefix(".retake-")
        .suffix(".probe")
        .tempfile_in(&folder)
        .map(drop)
        .map_err(|source| EngineError::Write { path: path.to_path_buf(), source })
}

/// The folder a file path lives in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes the rename itself durable (Unix: fsync of the folder). Best effort: some file systems refuse to sync a
/// folder, and by then the data is already safe on the disk.
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn writes_a_new_file_creating_its_folder_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/folder/out.txt");
        write_bytes(&path, b"hello").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        assert_eq!(entries(path.parent().unwrap()), ["out.txt"]);
    }

    #[test]
    fn a_failing_writer_leaves_the_old_file_intact_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let err = write_atomically(&path, |file| {
            file.write_all(b"half of the new").unwrap();
            Err(EngineError::invalid("the encoder gave up"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("the encoder gave up"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["out.txt"]);
    }

    #[test]
    fn a_failing_rename_is_a_write_error_naming_the_path_and_keeps_what_was_there() {
        // A non-empty folder where the file should go: the rename over it fails after the content was written.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep.txt"), "kept").unwrap();
        let err = write_bytes(&path, b"new").unwrap_err();
        assert!(matches!(&err, EngineError::Write { path: p, .. } if *p == path), "{err}");
        assert!(err.to_string().starts_with(&format!("cannot write `{}`", path.display())), "{err}");
        assert_eq!(std::fs::read_to_string(path.join("keep.txt")).unwrap(), "kept");
        assert_eq!(entries(dir.path()), ["out.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_bytes(&path, b"new").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        // A new file gets what `File::create` gives (0666 less the umask), not the temporary file's 0600.
        let (fresh, plain) = (dir.path().join("fresh.txt"), dir.path().join("plain.txt"));
        write_bytes(&fresh, b"x").unwrap();
        std::fs::write(&plain, "x").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), mode(&plain));
    }

    #[test]
    fn check_writable_accepts_a_writable_folder_and_leaves_it_untouched() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("out.wav")).unwrap();
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn check_writable_names_a_missing_folder_a_file_as_folder_and_a_folder_as_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/out.wav");
        let err = check_writable(&missing).unwrap_err();
        assert!(matches!(&err, EngineError::Write { path, .. } if *path == missing), "{err}");
        let err = err.to_string();
        assert!(err.contains("folder") && err.contains("folder` does not exist (create it first)"), "{err}");
        let file = dir.path().join("file.txt");
        std::fs::write(&file, "").unwrap();
        let err = check_writable(&file.join("out.wav")).unwrap_err().to_string();
        assert!(err.contains("file.txt` is not a folder"), "{err}");
        let err = check_writable(dir.path()).unwrap_err().to_string();
        assert!(err.contains("it is a folder"), "{err}");
    }

    /// `/proc` takes no new files, not even from root (tests may run as root, which writes into a mode-0555 folder).
    #[cfg(target_os = "linux")]
    #[test]
    fn check_writable_refuses_a_folder_that_takes_no_files_as_a_write_error() {
        let path = Path::new("/proc/out.wav");
        let err = check_writable(path).unwrap_err();
        assert!(matches!(&err, EngineError::Write { path: p, .. } if p == path), "{err}");
        assert!(err.to_string().starts_with("cannot write `/proc/out.wav`: "), "{err}");
    }
}
