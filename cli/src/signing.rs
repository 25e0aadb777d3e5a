//! `flagrail keygen` and `flagrail sign`: ed25519 keys and detached signatures of documents.
//!
//! A source given the public key (`verify_key`) only serves documents whose `.sig` matches
//! their exact bytes, so whoever can write the web root or the bucket can no longer decide
//! which model and prompt every user gets without the private key.

use std::io::Write;
use std::path::{Path, PathBuf};

use flagrail_sources::cache::{signature_path, write_atomic};
use flagrail_sources::PrivateKey;

use crate::args::Args;
use crate::{Failure, Outcome};

pub const KEYGEN_DETAILS: &str =
    "  --out DIR      where to write flagrail.key (mode 0600, never overwritten) and flagrail.pub
flagrail.pub is one line (ed25519:<hex>): give its text as verify_key / verifyKey to a source,
which then serves only documents with a matching <document>.sig. See docs/runbook.md §13.";

pub const SIGN_DETAILS: &str = "  --key FILE     the private key written by keygen
Writes FILE.sig, a detached ed25519 signature over FILE's exact bytes (any later edit, even of
whitespace, invalidates it). FILE must be a valid document. Upload the .sig before the document.";

/// Writes `flagrail.key` (mode 0600, never overwritten) and `flagrail.pub` into `--out DIR`.
pub fn keygen(args: &mut Args) -> Outcome {
    let dir = PathBuf::from(args.required("--out")?);
    args.finish()?;
    std::fs::create_dir_all(&dir)
        .map_err(|err| Failure::failed(format!("{}: {err}", dir.display())))?;
    let key = PrivateKey::generate()?;
    let private = dir.join("flagrail.key");
    let public = dir.join("flagrail.pub");
    write_private(&private, key.to_text().as_bytes())?;
    let public_text = format!("{}\n", key.verify_key().to_text());
    write_atomic(&public, public_text.as_bytes()).map_err(Failure::failed)?;
    outln!(
        "wrote {} (private: keep it secret) and {} (public: give its text as verify_key)",
        private.display(),
        public.display()
    );
    Ok(())
}

/// Creates the private key file exclusively with mode 0600: an existing key is never replaced
/// (that would silently invalidate every signature made with it).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|err| {
        Failure::failed(format!(
            "{}: {err} (an existing key is never overwritten)",
            path.display()
        ))
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| Failure::failed(format!("{}: {err}", path.display())))
}

/// Writes `FILE.sig`, the detached signature of FILE's exact bytes.
pub fn sign(args: &mut Args) -> Outcome {
    let key_path = args.required("--key")?;
    let file = args.positional("FILE")?;
    args.finish()?;
    let key_text = std::fs::read_to_string(&key_path)
        .map_err(|err| Failure::failed(format!("{key_path}: {err}")))?;
    let key = PrivateKey::parse(&key_text)?;
    let bytes = flagrail_core::live::read_document(Path::new(&file))?;
    // Only a document that loads is worth signing: a signed broken document would still be
    // rejected by every source, after the signature check.
    flagrail_core::Document::from_slice(&bytes)?;
    let signature = signature_path(Path::new(&file));
    write_atomic(&signature, key.sign(&bytes).as_bytes()).map_err(Failure::failed)?;
    outln!("{file}: signed -> {}", signature.display());
    Ok(())
}
