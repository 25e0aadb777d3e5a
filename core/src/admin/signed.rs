//! Kills of signed documents: the `.sig` beside a document is rewritten with it, by a key the
//! caller holds, or the kill is refused.
//!
//! A process given a verify key serves only a document whose `<path>.sig` matches its exact
//! bytes. A kill rewrites those bytes, so a kill that leaves the old signature would be
//! rejected by every such process: the kill would silently not happen where it matters. The
//! rules, decided before anything is written:
//!
//! | document | key given | what happens |
//! |---|---|---|
//! | unsigned | no | rewritten, as always |
//! | unsigned | yes | rewritten and signed (a warning says it is now signed) |
//! | signed by the key | yes | rewritten and re-signed |
//! | signed, not by the key (another key, or edited after signing) | yes | refused; `force` re-signs anyway (the edits become live everywhere) |
//! | signed | no | refused; `force` writes it and leaves the old `.sig` (verifying processes keep the previous revision; a warning says so) |
//!
//! The document is replaced first and its signature right after, both under the document's
//! lock; a watcher that reads the pair in between sees a mismatch, and one that verifies
//! never accepts it (it waits for the lock to be released and reads the pair again, see
//! `live::watch`).

use std::fs;
use std::path::{Path, PathBuf};

use super::invalid;
use crate::error::Result;
use crate::live::source::{read_signature_file, signature_path};

/// Signs rewritten documents (the private half of a `flagrail keygen` key).
///
/// Implemented outside the core (`flagrail_sources::PrivateKey`, ed25519) so that no
/// cryptography links into the evaluation crate.
pub trait DocumentSigner: Send + Sync {
    /// The text of the detached signature of `document` (what `<path>.sig` holds).
    fn sign(&self, document: &[u8]) -> String;
    /// Whether `signature` (the bytes of a `.sig` file) is this key's signature of `document`.
    fn has_signed(&self, document: &[u8], signature: &[u8]) -> bool;
}

/// Where the signature of a document is: `<path>.sig` for the path as given (the path the
/// services read, as `flagrail sign` writes it), through symlinks; else beside the real file
/// when one is there; else (none yet) beside the path as given.
pub(super) fn signature_file(given: &Path, real: &Path) -> PathBuf {
    [signature_path(given), signature_path(real)]
        .into_iter()
        .find_map(|candidate| fs::canonicalize(candidate).ok())
        .unwrap_or_else(|| signature_path(given))
}

/// What a kill does about the signature, decided before anything is written.
#[derive(Debug)]
pub(super) enum SignaturePlan {
    /// No signature before, none after.
    Unsigned,
    /// Write this signature text to the `.sig` after the document.
    Write(String),
    /// Leave the existing `.sig` as it is (forced kill of a signed document without a key).
    LeaveStale,
}

/// Applies the rules of the module documentation; `warnings` gets what a person must hear.
pub(super) fn plan(
    document: &Path,
    signature_file: &Path,
    old_text: &str,
    new_text: &str,
    signer: Option<&dyn DocumentSigner>,
    force: bool,
    warnings: &mut Vec<String>,
) -> Result<SignaturePlan> {
    // Through the guards of a document read: bounded, regular files only.
    let existing = read_signature_file(signature_file)?;
    let (doc, sig) = (document.display(), signature_file.display());
    match (signer, existing) {
        (None, None) => Ok(SignaturePlan::Unsigned),
        (Some(signer), None) => {
            warnings.push(format!(
                "{doc} was not signed; it is now ({sig} written). Processes given the matching verify key accept it"
            ));
            Ok(SignaturePlan::Write(signer.sign(new_text.as_bytes())))
        }
        (Some(signer), Some(signature)) => {
            if !signer.has_signed(old_text.as_bytes(), &signature) {
                let why = format!(
                    "{sig} is not this key's signature of the current {doc} (another key signed it, or the document was edited after it was signed)"
                );
                if !force {
                    return Err(invalid(format!(
                        "{why}; nothing was changed. Re-signing would make any unsigned edit live on every process that verifies (and with the wrong key they would all reject the kill). Check the key and the document (`flagrail validate {doc} --verify-key flagrail.pub`), or pass --force to re-sign with this key anyway"
                    )));
                }
                warnings.push(format!("{why}: re-signed with this key anyway (--force)"));
            }
            Ok(SignaturePlan::Write(signer.sign(new_text.as_bytes())))
        }
        (None, Some(_)) => {
            if !force {
                return Err(invalid(format!(
                    "{doc} is signed ({sig}) and no key was given; nothing was changed. Without re-signing, every process that verifies signatures would reject the new document and keep serving the previous revision: the kill would not reach them. Pass --key flagrail.key to re-sign it, or --force to write it unsigned anyway"
                )));
            }
            warnings.push(format!(
                "{doc} is signed but no key was given: written with its old signature left in place (--force). Processes that verify signatures REJECT this revision and keep serving the previous one until someone runs `flagrail sign --key flagrail.key {doc}`"
            ));
            Ok(SignaturePlan::LeaveStale)
        }
    }
}
