//! The master key that seals stored connections, and where a process finds it: the
//! `SWITCHYARD_MASTER_KEY` environment variable (32 bytes as 64 hex digits or base64), or a key
//! file kept apart from the data directory (`--master-key-file PATH`, [`Keyring::load_key_file`]:
//! it must exist), else the key file `master.key` in the data directory, created owner-only
//! (`0600`) with a random key on first start.
//!
//! Invariants:
//! - The key is never in the database, a log, an error or `Debug` output; only its id is shown.
//!   The id is a short hash of the key (16 hex digits), enough to tell keys apart and useless
//!   for finding the key.
//! - A key rotation in progress (`connections rotate-key`) is a second file, `master.key.next`
//!   (`PATH.next` next to a key file `PATH`, [`next_key_file`]):
//!   while it exists both keys are accepted for unsealing, and the rotation ends by renaming it
//!   over `master.key` once every row is re-sealed under it. A crash at any point leaves a
//!   keyring that opens every row.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::store::{DATABASE_FILE_MODE, ensure_data_dir};

/// The environment variable that holds the master key.
pub const MASTER_KEY_ENV: &str = "SWITCHYARD_MASTER_KEY";
/// The environment variable `connections rotate-key` reads the new key from.
pub const NEW_MASTER_KEY_ENV: &str = "SWITCHYARD_NEW_MASTER_KEY";
/// The key file in the data directory.
pub const KEY_FILE_NAME: &str = "master.key";
/// The new key's file while a rotation is in progress.
pub const NEXT_KEY_FILE_NAME: &str = "master.key.next";

/// Why a master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text given as a key is not 32 bytes in hex or base64. Never repeats the text.
    #[error(
        "{source_name} is not a master key: expected 32 bytes written as 64 hex digits or as \
         base64 (44 characters), got {length} characters"
    )]
    Malformed { source_name: String, length: usize },
    /// The key file could not be read or written.
    #[error("cannot {action} the master key file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The data directory could not be created.
    #[error("{0}")]
    DataDir(#[from] crate::store::StoreError),
}

/// A 256-bit master key. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct MasterKey {
    key: Key<Aes256Gcm>,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl MasterKey {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(Aes256Gcm::generate_key(OsRng).into())
    }

    fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let digest = Sha256::new()
            .chain_update(b"switchyard master key id\0")
            .chain_update(bytes)
            .finalize();
        MasterKey {
            key: bytes.into(),
            id: hex::encode(&digest[..8]),
        }
    }

    /// Reads a key written as 64 hex digits or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes; `source_name` says where the text came from, for the error.
    pub fn parse(text: &str, source_name: &str) -> Result<MasterKey, KeyError> {
        let text = text.trim();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            let engines = [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
                base64::engine::general_purpose::URL_SAFE,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ];
            engines.iter().find_map(|engine| engine.decode(text).ok())
        };
        match decoded.and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
            Some(bytes) => Ok(MasterKey::from_bytes(bytes)),
            None => Err(KeyError::Malformed {
                source_name: source_name.to_string(),
                length: text.chars().count(),
            }),
        }
    }

    /// The key's id: 16 hex digits of a hash of it, stored with every row it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as 64 hex digits, the form the key file holds.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key)
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key)
    }

    /// Reads the key file `path`.
    pub fn read_file(path: &Path) -> Result<MasterKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        MasterKey::parse(&text, &format!("the key file {}", path.display()))
    }

    /// Writes this key to a new file `path`, owner-only (`0600`); an existing file is an error.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let io_error = |action| {
            let path = path.to_path_buf();
            move |source| KeyError::Io {
                action,
                path,
                source,
            }
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, DATABASE_FILE_MODE);
        let mut file = options.open(path).map_err(io_error("create"))?;
        #[cfg(unix)]
        {
            // The umask may have narrowed the mode above; never widened it. Set it exactly.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(DATABASE_FILE_MODE))
                .map_err(io_error("restrict"))?;
        }
        writeln!(file, "{}", self.to_hex()).map_err(io_error("write"))?;
        file.sync_all().map_err(io_error("write"))?;
        Ok(())
    }
}

/// Where the process's master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SWITCHYARD_MASTER_KEY`.
    Environment,
    /// The key file at this path.
    File(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Environment => write!(f, "{MASTER_KEY_ENV}"),
            KeySource::File(path) => write!(f, "the key file {}", path.display()),
        }
    }
}

/// The keys a process seals and unseals with: the current one, plus the new one of a rotation
/// in progress.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: MasterKey,
    next: Option<MasterKey>,
    source: KeySource,
}

impl Keyring {
    /// A keyring of `current` alone.
    pub fn new(current: MasterKey, source: KeySource) -> Keyring {
        Keyring {
            current,
            next: None,
            source,
        }
    }

    /// The process's keys: from `SWITCHYARD_MASTER_KEY` when set, else from the key file of
    /// `data_dir` (created owner-only, with a new random key, when missing), plus the key of a
    /// rotation in progress there.
    pub fn load(data_dir: &Path) -> Result<Keyring, KeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) => Ok(Keyring::new(
                MasterKey::parse(&text, MASTER_KEY_ENV)?,
                KeySource::Environment,
            )),
            Err(_) => Keyring::load_file(data_dir),
        }
    }

    /// The keys of the key files of `data_dir`, ignoring the environment.
    pub fn load_file(data_dir: &Path) -> Result<Keyring, KeyError> {
        let path = data_dir.join(KEY_FILE_NAME);
        match MasterKey::read_file(&path) {
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                ensure_data_dir(data_dir)?;
                let key = MasterKey::generate();
                match key.write_new_file(&path) {
                    Ok(()) => {}
                    // Another process created it first: that one is read.
                    Err(KeyError::Io { source, .. })
                        if source.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        Keyring::load_key_file(&path)
    }

    /// The keys of the key file `path` (which must exist: a missing file is an error, never a
    /// new key that would not open the stored connections) and of a rotation in progress
    /// there ([`next_key_file`]), ignoring the environment.
    pub fn load_key_file(path: &Path) -> Result<Keyring, KeyError> {
        let current = MasterKey::read_file(path)?;
        warn_if_open(path);
        let next_path = next_key_file(path);
        let next = match MasterKey::read_file(&next_path) {
            Ok(key) => Some(key),
            Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Keyring {
            current,
            next,
            source: KeySource::File(path.to_path_buf()),
        })
    }

    /// The key new rows are sealed with.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The new key of a rotation in progress.
    pub fn next(&self) -> Option<&MasterKey> {
        self.next.as_ref()
    }

    /// Where the current key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The key with id `key_id`, if this keyring has it.
    pub fn find(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .find(|key| key.id() == key_id)
    }

    /// The ids of the keys this keyring accepts.
    pub fn ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .map(MasterKey::id)
            .collect()
    }
}

/// The new key's file while a rotation of the key file `path` is in progress: `PATH.next`
/// (`master.key.next` for the data directory's `master.key`).
pub fn next_key_file(path: &Path) -> PathBuf {
    let mut next = path.as_os_str().to_owned();
    next.push(".next");
    PathBuf::from(next)
}

/// Warns when the key file can be read by others (it was made `0600`; someone widened it).
fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "the master key file {} is mode {mode:04o}: other users may read it; \
                     `chmod 600 {}` to close it",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_hex_and_base64_and_errors_do_not_echo() {
        let key = MasterKey::generate();
        let hex_text = key.to_hex();
        assert_eq!(MasterKey::parse(&hex_text, "x").unwrap(), key);
        let bytes = hex::decode(&hex_text).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(MasterKey::parse(&format!(" {b64}\n"), "x").unwrap(), key);
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(MasterKey::parse(&b64url, "x").unwrap(), key);
        for bad in ["", "secret-but-short", &hex_text[..62], &"zz".repeat(32)] {
            let err = MasterKey::parse(bad, MASTER_KEY_ENV).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("SWITCHYARD_MASTER_KEY is not a master key"));
            if !bad.is_empty() {
                assert!(!message.contains(bad), "{message}");
            }
        }
        assert!(!format!("{key:?}").contains(&hex_text));
        assert_eq!(key.id().len(), 16);
        assert_ne!(key.id(), MasterKey::generate().id());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_created_owner_only_once() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        let first = Keyring::load_file(&dir).unwrap();
        let path = dir.join(KEY_FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(first.source(), &KeySource::File(path));
        let again = Keyring::load_file(&dir).unwrap();
        assert_eq!(again.current(), first.current());
        assert!(again.next().is_none());
        // A rotation in progress: both keys are accepted.
        let next = MasterKey::generate();
        next.write_new_file(&dir.join(NEXT_KEY_FILE_NAME)).unwrap();
        let both = Keyring::load_file(&dir).unwrap();
        assert_eq!(both.current(), first.current());
        assert!(both.find(next.id()).is_some());
        assert!(both.find(first.current().id()).is_some());
        assert!(both.find("0000000000000000").is_none());
    }
}
