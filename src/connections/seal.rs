//! Sealing a connection's values at rest: AES-256-GCM (the `aes-gcm` crate) under a
//! [`MasterKey`], a fresh random 96-bit nonce per seal, and the row's id and the key's id as
//! associated data.
//!
//! A sealed blob is `version (1 byte) ‖ nonce (12 bytes) ‖ ciphertext and tag`. Because the
//! associated data binds it to its row and key, a blob copied into another row, or relabelled
//! with another key id, fails to open exactly as a blob with a flipped bit does: unsealing
//! either succeeds with the bytes that were sealed, or fails. Errors say which row, never what
//! it holds.

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::keys::MasterKey;

/// The format version written as a blob's first byte.
const FORMAT_V1: u8 = 1;
/// Nonce length of AES-GCM (96 bits).
const NONCE_BYTES: usize = 12;

/// Why a blob could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The blob is too short or of an unknown format version.
    #[error("the sealed values of connection {row_id} are not in a known format")]
    Format { row_id: String },
    /// Authentication failed: a wrong key, or the blob or its row was changed.
    #[error(
        "the sealed values of connection {row_id} do not open with master key {key_id}: they \
         were changed, moved from another row, or sealed under another key"
    )]
    Tampered { row_id: String, key_id: String },
    /// Sealing itself failed (not expected with a valid key).
    #[error("could not seal the values of connection {row_id}")]
    Seal { row_id: String },
}

/// The associated data of a row's blob.
fn associated_data(row_id: &str, key_id: &str) -> Vec<u8> {
    let mut aad = b"switchyard connection v1\0".to_vec();
    aad.extend_from_slice(row_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_bytes());
    aad
}

/// Seals `plaintext` for row `row_id` under `key`.
pub fn seal(key: &MasterKey, row_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = associated_data(row_id, key.id());
    let ciphertext = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Seal {
            row_id: row_id.to_string(),
        })?;
    let mut blob = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
    blob.push(FORMAT_V1);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

/// Opens the blob of row `row_id`, sealed under `key`.
pub fn unseal(key: &MasterKey, row_id: &str, blob: &[u8]) -> Result<Vec<u8>, SealError> {
    let format_error = || SealError::Format {
        row_id: row_id.to_string(),
    };
    let (&version, rest) = blob.split_first().ok_or_else(format_error)?;
    if version != FORMAT_V1 || rest.len() < NONCE_BYTES + 16 {
        return Err(format_error());
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
    let aad = associated_data(row_id, key.id());
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Tampered {
            row_id: row_id.to_string(),
            key_id: key.id().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = "0123456789abcdef0123456789abcdef";
    const OTHER_ROW: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn a_sealed_blob_opens_only_for_its_row_and_key() {
        let key = MasterKey::generate();
        let secret = br#"{"token":"planted-secret"}"#;
        let blob = seal(&key, ROW, secret).unwrap();
        assert!(
            !blob.windows(secret.len()).any(|w| w == secret),
            "the plaintext is not in the blob"
        );
        assert_eq!(unseal(&key, ROW, &blob).unwrap(), secret);
        // A new nonce each time.
        assert_ne!(seal(&key, ROW, secret).unwrap(), blob);
        // Another row, another key, a flipped bit, a cut blob, another version.
        assert!(matches!(
            unseal(&key, OTHER_ROW, &blob),
            Err(SealError::Tampered { .. })
        ));
        assert!(matches!(
            unseal(&MasterKey::generate(), ROW, &blob),
            Err(SealError::Tampered { .. })
        ));
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let err = unseal(&key, ROW, &flipped).unwrap_err();
        assert!(err.to_string().contains(ROW), "{err}");
        assert!(matches!(
            unseal(&key, ROW, &blob[..20]),
            Err(SealError::Format { .. })
        ));
        let mut other_version = blob.clone();
        other_version[0] = 2;
        assert!(matches!(
            unseal(&key, ROW, &other_version),
            Err(SealError::Format { .. })
        ));
    }
}
