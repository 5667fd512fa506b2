//! Reading the files named on the command line, bounded whatever they are: a regular file, a
//! pipe, a device such as /dev/zero, or `-` (standard input).

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// What a file is read as, and how large it may be.
pub struct Limit {
    /// "sample file", "model file", …
    pub what: &'static str,
    pub bytes: u64,
    /// What to do when the file is larger.
    pub fix: &'static str,
}

/// `-` on the command line: standard input or output.
pub fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A path as messages show it.
pub fn display(path: &Path) -> String {
    if is_dash(path) { "standard input".to_string() } else { path.display().to_string() }
}

/// Opens `path` (`-`: standard input) for reading; a regular file over `limit.bytes` is refused
/// by its size before anything is read. A pipe or a device has no size to check: its reader
/// must count.
pub fn open_bounded(path: &Path, limit: &Limit) -> Result<Box<dyn Read>> {
    if is_dash(path) {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let name = display(path);
    let file = std::fs::File::open(path).with_context(|| format!("cannot read the {} {name}", limit.what))?;
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() > limit.bytes => {
            bail!("{name}: {} bytes is over the {}-byte limit for a {}; {}", m.len(), limit.bytes, limit.what, limit.fix)
        }
        _ => Ok(Box::new(file)),
    }
}

/// Reads `path` (`-`: standard input), refusing more than `limit.bytes`: a regular file by its
/// size before anything is read ([`open_bounded`]), anything else once it has given one byte
/// past the limit.
pub fn read_bounded(path: &Path, limit: &Limit) -> Result<Vec<u8>> {
    let name = display(path);
    let source = open_bounded(path, limit)?;
    let mut bytes = Vec::new();
    source.take(limit.bytes + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read the {} {name}", limit.what))?;
    if bytes.len() as u64 > limit.bytes {
        bail!("{name}: more than {} bytes, over the {}-byte limit for a {}; {}", limit.bytes, limit.bytes, limit.what, limit.fix);
    }
    Ok(bytes)
}
