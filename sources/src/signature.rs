//! Detached ed25519 signatures over the exact bytes of a flag document.
//!
//! Whoever can write the web root or the bucket decides which model and prompt every user
//! gets; a verify key moves that decision to whoever holds the private key. The formats are
//! one line of text each, so that keys can be passed as strings (environment variables,
//! secrets managers) and signatures served next to the document by any static host:
//!
//! - public key (`flagrail.pub`): `ed25519:` + 64 hex digits (the 32-byte key);
//! - private key (`flagrail.key`): `ed25519-private:` + 64 hex digits (the 32-byte seed);
//! - signature (`flags.json.sig`): `ed25519:` + 128 hex digits (the 64-byte signature).
//!
//! A signature covers the bytes as served, not a canonical form: re-formatting a signed
//! document invalidates it, which is the point.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use flagrail_core::admin::DocumentSigner;
use flagrail_core::live::DocumentVerifier;
use flagrail_core::Error;

const PUBLIC_PREFIX: &str = "ed25519:";
const PRIVATE_PREFIX: &str = "ed25519-private:";
const SIGNATURE_PREFIX: &str = "ed25519:";

/// The longest signature file read: one line, generously (the core's bound for `.sig` files,
/// used for `<url>.sig` too).
pub const MAX_SIGNATURE_BYTES: usize = flagrail_core::live::MAX_SIGNATURE_BYTES as usize;

/// The suffix of a detached signature next to its document (`flags.json.sig`).
pub use flagrail_core::live::SIGNATURE_SUFFIX;

/// A key that signs documents (the private half; never logged: `Debug` hides it).
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PrivateKey").field(&"<hidden>").finish()
    }
}

/// A key that verifies documents (the public half).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey(VerifyingKey);

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VerifyKey").field(&self.to_text()).finish()
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument { message }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl PrivateKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<PrivateKey, Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|err| Error::SourceUnreachable {
            source: "the operating system's random source".to_string(),
            detail: err.to_string(),
        })?;
        Ok(PrivateKey(SigningKey::from_bytes(&seed)))
    }

    /// Parses the text of `flagrail.key` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<PrivateKey, Error> {
        let text = text.trim();
        let seed = text
            .strip_prefix(PRIVATE_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(|| {
                invalid(format!(
                    "not a flagrail private key: expected \"{PRIVATE_PREFIX}\" and 64 hex digits"
                ))
            })?;
        Ok(PrivateKey(SigningKey::from_bytes(&seed)))
    }

    /// The text of `flagrail.key` (one line, with a newline).
    pub fn to_text(&self) -> String {
        format!("{PRIVATE_PREFIX}{}\n", hex(self.0.as_bytes()))
    }

    pub fn verify_key(&self) -> VerifyKey {
        VerifyKey(self.0.verifying_key())
    }

    /// The detached signature of `document` (one line, with a newline).
    pub fn sign(&self, document: &[u8]) -> String {
        let signature = self.0.sign(document);
        format!("{SIGNATURE_PREFIX}{}\n", hex(&signature.to_bytes()))
    }
}

impl VerifyKey {
    /// Parses the text of `flagrail.pub` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<VerifyKey, Error> {
        let bytes = text
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .and_then(unhex::<32>)
            .ok_or_else(|| {
                invalid(format!(
                    "not a flagrail verify key: expected \"{PUBLIC_PREFIX}\" and 64 hex digits (the text of flagrail.pub)"
                ))
            })?;
        VerifyingKey::from_bytes(&bytes)
            .map(VerifyKey)
            .map_err(|_| invalid("the verify key is not a valid ed25519 point".to_string()))
    }

    /// The text of `flagrail.pub` (without a newline).
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_PREFIX}{}", hex(self.0.as_bytes()))
    }

    /// Checks `signature` (the text of the `.sig` file, `None` when there is none) over
    /// `document`; the error names `source` and says what is wrong.
    pub fn verify(
        &self,
        source: &str,
        document: &[u8],
        signature: Option<&[u8]>,
    ) -> Result<(), Error> {
        let rejected = |detail: &str| Error::SignatureInvalid {
            source: source.to_string(),
            detail: detail.to_string(),
        };
        let signature = signature.ok_or_else(|| rejected("no signature (.sig) was found"))?;
        let text = std::str::from_utf8(signature)
            .ok()
            .map(str::trim)
            .and_then(|t| t.strip_prefix(SIGNATURE_PREFIX))
            .and_then(unhex::<64>)
            .ok_or_else(|| {
                rejected("the .sig file is not \"ed25519:\" followed by 128 hex digits")
            })?;
        let signature = Signature::from_bytes(&text);
        self.0.verify(document, &signature).map_err(|_| {
            rejected("the signature does not match these bytes under the configured key (a different key, a changed document, or a signature of another revision)")
        })
    }
}

/// A file source given a verify key checks every version of the document with it (the core
/// reads `<path>.sig` and calls this).
impl DocumentVerifier for VerifyKey {
    fn verify(&self, source: &str, document: &[u8], signature: Option<&[u8]>) -> Result<(), Error> {
        VerifyKey::verify(self, source, document, signature)
    }
}

/// `flagrail kill --key` re-signs the rewritten document with this.
impl DocumentSigner for PrivateKey {
    fn sign(&self, document: &[u8]) -> String {
        PrivateKey::sign(self, document)
    }

    fn has_signed(&self, document: &[u8], signature: &[u8]) -> bool {
        self.verify_key()
            .verify("", document, Some(signature))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_way_to_be_wrong() {
        let key = PrivateKey::generate().unwrap();
        let public = VerifyKey::parse(&key.verify_key().to_text()).unwrap();
        let again = PrivateKey::parse(&key.to_text()).unwrap();
        assert_eq!(again.verify_key(), public);

        let document = br#"{"revision":"r2","flags":{}}"#;
        let signature = key.sign(document);
        public
            .verify("t", document, Some(signature.as_bytes()))
            .unwrap();

        let code = |r: Result<(), Error>| r.unwrap_err().code();
        assert_eq!(
            code(public.verify("t", document, None)),
            "SIGNATURE_INVALID"
        );
        let mut tampered = document.to_vec();
        tampered[5] ^= 1;
        assert_eq!(
            code(public.verify("t", &tampered, Some(signature.as_bytes()))),
            "SIGNATURE_INVALID"
        );
        let other = PrivateKey::generate().unwrap();
        assert_eq!(
            code(public.verify("t", document, Some(other.sign(document).as_bytes()))),
            "SIGNATURE_INVALID"
        );
        let older = key.sign(br#"{"revision":"r1","flags":{}}"#);
        assert_eq!(
            code(public.verify("t", document, Some(older.as_bytes()))),
            "SIGNATURE_INVALID"
        );
        assert_eq!(
            code(public.verify("t", document, Some(b"ed25519:zz"))),
            "SIGNATURE_INVALID"
        );
    }

    #[test]
    fn keys_that_do_not_parse_name_the_expected_form() {
        let err = VerifyKey::parse("ssh-ed25519 AAAA").unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        assert!(err.to_string().contains("flagrail.pub"));
        assert!(PrivateKey::parse("ed25519-private:00").is_err());
        // The private key never shows in Debug output.
        let key = PrivateKey::generate().unwrap();
        assert!(!format!("{key:?}").contains(&key.to_text()[16..40]));
    }
}
