//! The SQLite data directory and database files at rest: they hold webhook payloads, module
//! outputs and the API token's hash, so only their owner may read them.
//!
//! # Invariants
//! - A data directory the store creates is `0700`, its parents too; the mode is set
//!   explicitly after creation, so the umask cannot widen (or narrow) it.
//! - The database file is created by the store (before SQLite opens it) as `0600`, and an
//!   existing one — with its `-wal` and `-shm` files — is tightened to `0600`: they are the
//!   store's own files. SQLite gives the `-wal` and `-shm` files it creates the mode of the
//!   database file. The owner lock file is `0600` too ([`super::take_owner_lock`]).
//! - An existing data directory others may enter is left as it is (it may be a directory the
//!   user shares on purpose, such as `--data-dir .`) with a warning saying how to close it.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::{Result, StoreError};

/// The mode of a data directory the store creates: owner only.
pub const DATA_DIR_MODE: u32 = 0o700;

/// The mode of the database, its `-wal` and `-shm` files and the lock file: owner only.
pub const DATABASE_FILE_MODE: u32 = 0o600;

/// Creates the data directory `dir` (and missing parents) owner-only, or warns when an
/// existing one is open to other users.
pub fn ensure_data_dir(dir: &Path) -> Result<()> {
    let io_error = |source| StoreError::Io {
        action: "create the data directory",
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            warn_if_open(dir, &meta);
            Ok(())
        }
        // Not a directory: creating it reports what is in the way.
        Ok(_) => fs::create_dir(dir).map_err(io_error),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
            builder.create(dir).map_err(io_error)?;
            set_mode(dir, DATA_DIR_MODE).map_err(io_error)
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Makes sure the database file `path` exists owner-only before SQLite opens it: creates
/// it empty (SQLite takes an empty file for a new database) as `0600`, or tightens an
/// existing one and its `-wal` and `-shm` files to `0600`.
pub(crate) fn ensure_database_file(path: &Path) -> Result<()> {
    let io_error = |source| StoreError::Io {
        action: "create the database file",
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, DATABASE_FILE_MODE);
    match options.open(path) {
        Ok(file) => {
            drop(file);
            set_mode(path, DATABASE_FILE_MODE).map_err(io_error)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                tighten(Path::new(&file));
            }
            Ok(())
        }
        Err(e) => Err(io_error(e)),
    }
}

/// Gives the open lock file `file` at `path` the owner-only mode.
pub(crate) fn restrict_lock_file(file: &File, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(DATABASE_FILE_MODE)) {
            tracing::warn!(file = %path.display(), error = %e, "cannot make the lock file owner-only");
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
}

/// Sets `path`'s permission bits to `mode`, whatever the umask.
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Tightens an existing database file to `0600` if others may read it (a missing one is
/// fine); a file the store cannot change is left with a warning.
fn tighten(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & !DATABASE_FILE_MODE == 0 {
            return;
        }
        match set_mode(path, DATABASE_FILE_MODE) {
            Ok(()) => tracing::info!(
                file = %path.display(),
                "database file was mode {mode:04o}; it is now owner-only (0600)"
            ),
            Err(e) => tracing::warn!(
                file = %path.display(),
                error = %e,
                "database file is mode {mode:04o} and cannot be made owner-only"
            ),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Warns when the existing data directory `dir` lets other users in.
fn warn_if_open(dir: &Path, meta: &fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "the data directory {} is mode {mode:04o}: other users can list it; it holds \
                 webhook payloads, execution data and the API token's hash — `chmod 700 {}` to \
                 close it (the database files in it are owner-only)",
                dir.display(),
                dir.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, meta);
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_owner_only_and_existing_files_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("data");
        ensure_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")) & 0o077, 0, "parents too");
        // An existing directory is left as it is.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o755);

        let db = dir.join("x.db");
        ensure_database_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(fs::metadata(&db).unwrap().len(), 0);
        for file in ["x.db", "x.db-wal", "x.db-shm"] {
            let path = dir.join(file);
            fs::write(&path, b"").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        ensure_database_file(&db).unwrap();
        for file in ["x.db", "x.db-wal", "x.db-shm"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }

        let file = root.path().join("in-the-way");
        fs::write(&file, b"").unwrap();
        assert!(ensure_data_dir(&file).is_err());
    }
}
