//! SHA-256 checksums of model files: a model can be checked against a digest given by the user
//! or against a `SHA256SUMS` manifest (the format `sha256sum` writes: `HEX  NAME` or `HEX *NAME`
//! per line) published beside it.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// File name of the checksum manifest looked for beside a model.
pub const MANIFEST: &str = "SHA256SUMS";

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that `expected` is 64 hex digits (either case) and returns it in lower case.
pub fn parse_hex(expected: &str) -> Result<String> {
    let e = expected.trim();
    if e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::format(format!(
            "'{}' is not a SHA-256 digest (expected 64 hexadecimal digits, got {} characters)",
            quoted(e),
            e.chars().count()
        )));
    }
    Ok(e.to_ascii_lowercase())
}

/// Checks `bytes` against an expected digest; `what` names the file and `source` where the
/// expected value came from (for the message).
pub fn verify(bytes: &[u8], expected: &str, what: &str, source: &str) -> Result<()> {
    let expected = parse_hex(expected)?;
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(Error::format(format!(
            "{what}: checksum mismatch: SHA-256 is {actual} but {source} says {expected} \
             (the file is damaged, incomplete or not the published one)"
        )));
    }
    Ok(())
}

/// Largest `SHA256SUMS` read: a manifest lists a few files, a line each.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// How [`verify_file`] checked a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// Against the digest the caller gave.
    Given,
    /// Against this manifest's entry.
    Manifest(std::path::PathBuf),
    /// This manifest lies beside the file but does not list it: not checked.
    NotListed(std::path::PathBuf),
    /// No digest is known: not checked.
    Unknown,
}

/// Checks the bytes of the model file at `path` against `sha256` when given, else against a
/// `SHA256SUMS` manifest beside it (a regular file, read up to [`MAX_MANIFEST_BYTES`]) that lists
/// it. A mismatch, or a manifest that cannot be parsed, is an error.
pub fn verify_file(path: &std::path::Path, bytes: &[u8], sha256: Option<&str>) -> Result<Verified> {
    use std::io::Read;
    let what = path.display().to_string();
    if let Some(hex) = sha256 {
        verify(bytes, hex, &what, "--sha256")?;
        return Ok(Verified::Given);
    }
    let manifest = path.with_file_name(MANIFEST);
    // Only a regular file is opened: a FIFO there would block the open, a device never end.
    match std::fs::metadata(&manifest) {
        Err(_) => return Ok(Verified::Unknown),
        Ok(m) if !m.is_file() => {
            return Err(Error::format(format!("{}: not a regular file, so not a checksum manifest (remove it or pass --sha256)", manifest.display())));
        }
        Ok(_) => {}
    }
    let Ok(file) = std::fs::File::open(&manifest) else { return Ok(Verified::Unknown) };
    let mut text = String::new();
    if file.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text).is_err() {
        return Err(Error::format(format!("{}: not a text file", manifest.display())));
    }
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(Error::format(format!("{}: over {} KiB, too large for a checksum manifest", manifest.display(), MAX_MANIFEST_BYTES >> 10)));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let entry = manifest_entry(&text, name).map_err(|e| Error::format(format!("{}: {}", manifest.display(), strip(&e))))?;
    match entry {
        Some(hex) => {
            verify(bytes, &hex, &what, &manifest.display().to_string())?;
            Ok(Verified::Manifest(manifest))
        }
        None => Ok(Verified::NotListed(manifest)),
    }
}

/// The digest a `SHA256SUMS` manifest lists for `file_name`, if any. Malformed lines are errors
/// that name the line; blank lines and `#` comments are skipped.
pub fn manifest_entry(manifest: &str, file_name: &str) -> Result<Option<String>> {
    let mut found = None;
    for (no, line) in manifest.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((hex, name)) = line.split_once(char::is_whitespace) else {
            return Err(Error::format(format!("{MANIFEST} line {}: expected 'SHA256  FILE', got '{}'", no + 1, quoted(line))));
        };
        let hex = parse_hex(hex).map_err(|e| Error::format(format!("{MANIFEST} line {}: {}", no + 1, strip(&e))))?;
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        if name.is_empty() {
            return Err(Error::format(format!("{MANIFEST} line {}: no file name after the digest", no + 1)));
        }
        if name == file_name {
            if found.as_ref().is_some_and(|f| f != &hex) {
                return Err(Error::format(format!("{MANIFEST} lists '{file_name}' twice with different digests (line {})", no + 1)));
            }
            found = Some(hex);
        }
    }
    Ok(found)
}

/// At most 60 characters of a manifest line for a message, control characters escaped: a
/// downloaded manifest must not write escape sequences to a terminal.
fn quoted(line: &str) -> String {
    let mut out: String = line.chars().take(60).flat_map(char::escape_debug).collect();
    if line.chars().nth(60).is_some() {
        out.push('…');
    }
    out
}

fn strip(e: &Error) -> String {
    match e {
        Error::Format(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn manifest_lines() {
        let m = "# refcast models\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a.safetensors\n\
                 BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD *b.safetensors\n";
        assert_eq!(manifest_entry(m, "a.safetensors").unwrap().unwrap().len(), 64);
        assert!(manifest_entry(m, "b.safetensors").unwrap().unwrap().starts_with("ba78"));
        assert_eq!(manifest_entry(m, "c.safetensors").unwrap(), None);
        let e = manifest_entry("nothex  a.safetensors\n", "a.safetensors").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("64 hexadecimal"), "{e}");
    }
}
