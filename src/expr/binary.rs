//! Binary values (files): the bytes stored once on disk, a small handle carried in bundles.
//!
//! A handle is the JSON object
//! `{"__IMTBINARY__": "<sha-256 of the bytes, hex>", "size": N, "mimeType": "…", "fileName": "…"}`;
//! it is what every module and IML function producing a file returns, and what history
//! stores, so a 20 MB file is 20 MB on disk and a hundred bytes in a bundle instead of 20
//! million JSON numbers. The bytes live in one file per content in the binaries directory
//! ([`set_dir`]: `<data-dir>/binaries` for `serve`/`worker`, the system temp directory's
//! `switchyard-binaries` otherwise), named by their SHA-256, so equal contents are stored
//! once and a handle can never name a path outside that directory.
//!
//! Invariants:
//! - a file is written under a temporary name and renamed when complete: a handle never
//!   names a partial file, and concurrent writers of the same content (other processes
//!   sharing the directory included) agree on the result;
//! - storing a content that is already there refreshes its modification time, the clock the
//!   retention sweep ([`sweep`]) goes by;
//! - a handle's id is 64 lower-case hex digits or it is not a handle ([`Binary::from_value`]).
//!
//! Make's own JSON form of a buffer, `{"type":"Buffer","data":[…]}`, is still read wherever
//! bytes are read (`crate::expr::value::as_buffer`); it is never produced.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The key that marks a binary handle; its value is the content's id.
pub const MARKER: &str = "__IMTBINARY__";

/// The MIME type of bytes whose type nobody declared.
pub const DEFAULT_MIME: &str = "application/octet-stream";

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the directory binaries are stored in, once per process, before the first binary is
/// written (`serve` and `worker` call it with `<data-dir>/binaries`). Returns false when a
/// directory was already set (or used).
pub fn set_dir(dir: PathBuf) -> bool {
    DIR.set(dir).is_ok()
}

/// The directory binaries are stored in ([`set_dir`], or the temp directory's
/// `switchyard-binaries`).
pub fn dir() -> &'static Path {
    DIR.get_or_init(|| std::env::temp_dir().join("switchyard-binaries"))
}

/// One stored binary: what its handle says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub id: String,
    pub size: u64,
    pub mime_type: String,
    pub file_name: String,
}

/// Whether `id` is the shape of a content id (so it names a file inside [`dir`]).
pub fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Binary {
    /// The handle a bundle carries.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert(MARKER.into(), Value::from(self.id.clone()));
        map.insert("size".into(), Value::from(self.size));
        map.insert("mimeType".into(), Value::from(self.mime_type.clone()));
        map.insert("fileName".into(), Value::from(self.file_name.clone()));
        Value::Object(map)
    }

    /// The binary a handle names; `None` for anything that is not a handle.
    pub fn from_value(value: &Value) -> Option<Binary> {
        let map = value.as_object()?;
        let id = map.get(MARKER)?.as_str()?;
        if !valid_id(id) {
            return None;
        }
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
        Some(Binary {
            id: id.to_string(),
            size: map.get("size").and_then(Value::as_u64).unwrap_or(0),
            mime_type: match text("mimeType") {
                "" => DEFAULT_MIME.to_string(),
                mime => mime.to_string(),
            },
            file_name: text("fileName").to_string(),
        })
    }

    /// Where the bytes are.
    pub fn path(&self) -> PathBuf {
        path_of(&self.id)
    }

    /// Opens the bytes for reading.
    pub fn open(&self) -> io::Result<File> {
        File::open(self.path())
    }

    /// All the bytes, read into memory.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut file = self.open()?;
        let mut bytes = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The text history and the console show instead of the bytes:
    /// `(binary, 20 MB, application/pdf)`.
    pub fn summary(&self) -> String {
        format!("(binary, {}, {})", human_size(self.size), self.mime_type)
    }

    /// The same binary under another name and type (the bytes are shared).
    pub fn renamed(mut self, file_name: Option<&str>, mime_type: Option<&str>) -> Binary {
        if let Some(name) = file_name.filter(|n| !n.is_empty()) {
            self.file_name = name.to_string();
        }
        if let Some(mime) = mime_type.filter(|m| !m.is_empty()) {
            self.mime_type = mime.to_string();
        }
        self
    }
}

/// Where the bytes of content `id` are (`id` must be [`valid_id`]).
pub fn path_of(id: &str) -> PathBuf {
    dir().join(id)
}

/// A size as people read it, in decimal units: `512 B`, `1.5 kB`, `20 MB`.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if size < 1000 {
        return format!("{size} B");
    }
    let mut value = size as f64;
    let mut unit = "";
    for u in UNITS {
        value /= 1000.0;
        unit = u;
        if value < 1000.0 {
            break;
        }
    }
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{} {unit}", rounded as u64)
    } else {
        format!("{rounded:.1} {unit}")
    }
}

/// Writes a binary chunk by chunk (a download as it arrives): hashes as it goes, and
/// [`Writer::finish`] moves the file to its content's name.
pub struct Writer {
    file: File,
    temp: PathBuf,
    hasher: Sha256,
    size: u64,
    done: bool,
}

impl Writer {
    pub fn new() -> io::Result<Writer> {
        let dir = dir();
        std::fs::create_dir_all(dir)?;
        let temp = dir.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
        let file = File::create(&temp)?;
        Ok(Writer {
            file,
            temp,
            hasher: Sha256::new(),
            size: 0,
            done: false,
        })
    }

    /// Appends `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Completes the file and names it by its content.
    pub fn finish(mut self, mime_type: &str, file_name: &str) -> io::Result<Binary> {
        self.file.flush()?;
        let id = hex::encode(self.hasher.finalize_reset());
        let target = path_of(&id);
        if target.exists() {
            // Stored already: keep that copy, and tell the retention sweep it is in use.
            File::options()
                .append(true)
                .open(&target)?
                .set_modified(SystemTime::now())?;
            std::fs::remove_file(&self.temp)?;
        } else {
            std::fs::rename(&self.temp, &target)?;
        }
        self.done = true;
        Ok(Binary {
            id,
            size: self.size,
            mime_type: if mime_type.is_empty() {
                DEFAULT_MIME.to_string()
            } else {
                mime_type.to_string()
            },
            file_name: file_name.to_string(),
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Stores `bytes` held in memory.
pub fn store(bytes: &[u8], mime_type: &str, file_name: &str) -> io::Result<Binary> {
    let mut writer = Writer::new()?;
    writer.write(bytes)?;
    writer.finish(mime_type, file_name)
}

/// Every handle in `value`, depth first (nesting walked with an explicit stack).
pub fn handles(value: &Value) -> Vec<Binary> {
    let mut found = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(binary) = Binary::from_value(v) {
                    found.push(binary);
                } else {
                    stack.extend(map.values().rev());
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    found
}

/// `value` with every handle given its `summary` and a `download` link (`link(binary)`):
/// how the API shows bundles.
pub fn annotate(value: &mut Value, link: &dyn Fn(&Binary) -> String) {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        if let Some(binary) = Binary::from_value(v) {
            if let Value::Object(map) = v {
                map.insert("summary".into(), Value::from(binary.summary()));
                map.insert("download".into(), Value::from(link(&binary)));
            }
            continue;
        }
        match v {
            Value::Object(map) => stack.extend(map.values_mut()),
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Deletes the stored binaries (and abandoned partial files) not written or reused for
/// `older_than`; returns how many were deleted. History keeps handles only as long as the
/// executions that hold them, so the service sweeps with its history retention.
pub fn sweep(older_than: Duration) -> io::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir()) else {
        return Ok(0);
    };
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut deleted = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(valid_id(&name) || name.starts_with(".partial-")) {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified());
        if modified.is_ok_and(|m| m < cutoff) && std::fs::remove_file(entry.path()).is_ok() {
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_once_and_read_back() {
        let a = store(b"hello binary", "text/plain", "a.txt").unwrap();
        let b = store(b"hello binary", "", "b.bin").unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(b.mime_type, DEFAULT_MIME);
        assert_eq!(a.read().unwrap(), b"hello binary");
        let value = a.to_value();
        assert_eq!(value["size"], json!(12));
        assert_eq!(Binary::from_value(&value), Some(a.clone()));
        assert_eq!(a.summary(), "(binary, 12 B, text/plain)");
    }

    #[test]
    fn handles_are_recognised_strictly() {
        assert_eq!(Binary::from_value(&json!({MARKER: "../etc/passwd"})), None);
        assert_eq!(Binary::from_value(&json!({MARKER: "A".repeat(64)})), None);
        assert_eq!(Binary::from_value(&json!({"type": "Buffer"})), None);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1500), "1.5 kB");
        assert_eq!(human_size(20_000_000), "20 MB");
        assert_eq!(human_size(20 * 1024 * 1024), "21 MB");
    }

    #[test]
    fn annotate_adds_summary_and_link() {
        let b = store(b"%PDF-1.4", "application/pdf", "r.pdf").unwrap();
        let mut bundle = json!({"data": b.to_value(), "list": [b.to_value()]});
        assert_eq!(handles(&bundle).len(), 2);
        annotate(&mut bundle, &|b| format!("/x/{}", b.id));
        assert_eq!(bundle["data"]["summary"], "(binary, 8 B, application/pdf)");
        assert_eq!(bundle["list"][0]["download"], format!("/x/{}", b.id));
    }
}
