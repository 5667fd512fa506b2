//! Standard output and error may be closed (`| head`) or full (`2>/dev/full`). A write there is
//! an error that names the stream, never a panic as with `println!`/`eprintln!`; a closed pipe
//! ends the process quietly, as the command before `head` is expected to.

use std::io::Write;

use anyhow::{Context, Result};

/// The exit status of a process whose reader went away: 128 + SIGPIPE, as a shell reports it.
pub const BROKEN_PIPE_STATUS: i32 = 128 + 13;

/// Writes one line to standard error: `note!("refcast: {x}")?`.
macro_rules! note {
    ($($arg:tt)*) => { $crate::cli::stdio::line_to_stderr(format_args!($($arg)*)) };
}

pub fn line_to_stderr(line: std::fmt::Arguments) -> Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_fmt(line).and_then(|()| err.write_all(b"\n")).context("cannot write to standard error")
}

/// Writes `bytes` to standard output.
pub fn to_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).context("cannot write to standard output")
}

/// Whether the error comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Reports a failed run on standard error (when it can) and returns the exit status: quiet for a
/// closed pipe, 1 for any other error.
pub fn report_failure(e: &anyhow::Error) -> i32 {
    if is_broken_pipe(e) {
        return BROKEN_PIPE_STATUS;
    }
    let _ = writeln!(std::io::stderr(), "error: {e:#}");
    1
}
