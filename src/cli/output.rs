//! Output files that never destroy what they replace.
//!
//! - A regular file, existing or new, is written to a temporary file in its directory (created
//!   with `O_EXCL` under an unpredictable name, so nothing planted there is followed) and renamed
//!   over it: a failed or interrupted run leaves the old file whole. The new file keeps the old
//!   one's permission bits (a private 0600 file stays private); a new file gets 0666 less the
//!   umask, as with any file a program creates.
//! - A symbolic link is followed: the file it names is replaced as above, and the link stays. A
//!   link to nothing is refused rather than creating a file wherever it points.
//! - Special files (a terminal, /dev/null, a FIFO, a socket) and `-`, standard output, are written
//!   in place: a rename would replace the device or the pipe with a plain file.
//! - An output that is one of the run's inputs, by any path, is refused before anything runs.

use std::fs::{Metadata, OpenOptions, Permissions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tempfile::NamedTempFile;

use super::input::is_dash;
use super::signals;

/// Where an output goes, decided before the run does its work.
pub enum Output {
    /// `-`: standard output.
    Stdout,
    /// A device, FIFO or socket, written where it is.
    InPlace(PathBuf),
    /// A regular file, replaced by renaming `temp` over `target` (the file a link names).
    Replace { path: PathBuf, target: PathBuf, temp: NamedTempFile },
}

impl Output {
    /// Decides how `path` is written; for a regular file its temporary is created now, so that an
    /// unwritable directory is an error before any work is done.
    pub fn prepare(path: &Path) -> Result<Output> {
        if is_dash(path) {
            return Ok(Output::Stdout);
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => bail!("cannot write {}: it is a directory; name a file inside it", path.display()),
            Ok(m) if !m.is_file() => Ok(Output::InPlace(path.to_path_buf())),
            Ok(m) => {
                // The file itself, wherever links lead: its directory holds the temporary.
                let target = std::fs::canonicalize(path).with_context(|| format!("cannot write {}", path.display()))?;
                Output::replacing(path, target, Some(&m))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Ok(link) = std::fs::read_link(path) {
                    bail!(
                        "cannot write {}: it is a symbolic link to {}, which does not exist; create that file or remove the link",
                        path.display(),
                        link.display()
                    );
                }
                Output::replacing(path, path.to_path_buf(), None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    }

    fn replacing(path: &Path, target: PathBuf, existing: Option<&Metadata>) -> Result<Output> {
        let temp = temporary_beside(&target, existing.map(Metadata::permissions))
            .with_context(|| format!("cannot write {}: no temporary file can be created in its directory", path.display()))?;
        signals::track(temp.path());
        Ok(Output::Replace { path: path.to_path_buf(), target, temp })
    }

    /// Writes the output with `write`; a regular file changes only when all of it is written.
    pub fn write(self, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        let mut writer = self.begin()?;
        writer.write(write)?;
        writer.finish()
    }

    /// Opens the output for writing in parts ([`Writer::write`]); a regular file changes only
    /// at [`Writer::finish`], and a writer dropped before it leaves the file as it was.
    pub fn begin(self) -> Result<Writer> {
        let (sink, name) = match self {
            Output::Stdout => (Sink::Stdout(std::io::stdout().lock()), None),
            Output::InPlace(path) => {
                let file = OpenOptions::new().write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                (Sink::File(file), Some(path))
            }
            Output::Replace { path, target, temp } => (Sink::Temp { temp, target }, Some(path)),
        };
        Ok(Writer { sink: Some(BufWriter::new(sink)), name })
    }
}

/// Where a [`Writer`] writes.
enum Sink {
    Stdout(std::io::StdoutLock<'static>),
    File(std::fs::File),
    /// The temporary renamed over `target` at the end.
    Temp { temp: NamedTempFile, target: PathBuf },
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File(f) => f.write(buf),
            // Through the file itself: the error then names the output, not the temporary's name.
            Sink::Temp { temp, .. } => temp.as_file_mut().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
            Sink::Temp { temp, .. } => temp.as_file_mut().flush(),
        }
    }
}

/// An output being written in parts: [`Output::begin`], [`Writer::write`] as often as needed,
/// [`Writer::finish`].
pub struct Writer {
    /// `None` once finished.
    sink: Option<BufWriter<Sink>>,
    /// The path as the user gave it; `None` for standard output.
    name: Option<PathBuf>,
}

impl Writer {
    /// Writes one part with `write`.
    pub fn write(&mut self, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        let sink = self.sink.as_mut().expect("a writer is written before it is finished");
        write(sink).with_context(|| self.failure())
    }

    /// Writes what is buffered and, for a regular file, renames the temporary into place.
    pub fn finish(mut self) -> Result<()> {
        let sink = self.sink.take().expect("a writer is finished once");
        let result = (|| -> Result<()> {
            match sink.into_inner().map_err(|e| e.into_error())? {
                Sink::Stdout(mut s) => s.flush()?,
                Sink::File(mut f) => f.flush()?,
                Sink::Temp { temp, target } => {
                    let temp_path = temp.path().to_path_buf();
                    let persisted = temp.as_file().sync_all().map_err(anyhow::Error::from).and_then(|()| temp.persist(&target).map(drop).map_err(|e| e.error.into()));
                    signals::untrack(&temp_path);
                    persisted?
                }
            }
            Ok(())
        })();
        result.with_context(|| self.failure())
    }

    fn failure(&self) -> String {
        match &self.name {
            None => "cannot write to standard output".to_string(),
            Some(path) => format!("cannot write {}", path.display()),
        }
    }
}

impl Drop for Writer {
    /// A writer dropped unfinished (an error before the end) removes its temporary.
    fn drop(&mut self) {
        if let Some(Sink::Temp { temp, .. }) = self.sink.as_ref().map(BufWriter::get_ref) {
            signals::untrack(temp.path());
        }
    }
}

/// An `O_EXCL` temporary file with a random name in `target`'s directory, with the permission
/// bits the target has (`None`: a new file's, 0666 less the umask).
fn temporary_beside(target: &Path, permissions: Option<Permissions>) -> std::io::Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".refcast-").suffix(".tmp");
    #[cfg(unix)]
    if permissions.is_none() {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(Permissions::from_mode(0o666));
    }
    let temp = builder.tempfile_in(dir)?;
    if let Some(p) = permissions {
        temp.as_file().set_permissions(p)?;
    }
    Ok(temp)
}

/// Refuses an output that is one of the inputs (`(what, path)`), by any path to the same file:
/// the run would replace its own input.
pub fn refuse_output_over_input(output: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let Some(out) = regular_file_identity(output) else { return Ok(()) };
    for (what, input) in inputs {
        if regular_file_identity(input) == Some(out.clone()) {
            bail!(
                "the output {} is the {what} {}: writing it would replace the input; name another output file",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// What tells one regular file from another (device and inode on Unix), following links. Special
/// files are never the same output as an input: /dev/stdin and /dev/stdout may be one terminal.
#[cfg(unix)]
fn regular_file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file() && !is_dash(path))?;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn regular_file_identity(path: &Path) -> Option<PathBuf> {
    std::fs::metadata(path).ok().filter(|m| m.is_file() && !is_dash(path))?;
    std::fs::canonicalize(path).ok()
}
