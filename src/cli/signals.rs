//! Temporary files are removed when the process is interrupted. A temporary is deleted when it is
//! dropped, but SIGINT (Ctrl-C), SIGTERM and SIGHUP end the process without running destructors,
//! which would leave a hidden file holding sample-derived data beside the output.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Temporary files written now.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes the pending temporary files on SIGINT, SIGTERM and SIGHUP, then exits with 128 + the
/// signal's number (130, 143, 129), the status a shell reports for a process the signal ended.
pub fn remove_temporaries_on_termination() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                remove_pending();
                std::process::exit(128 + signal);
            }
        });
    }
    Ok(())
}

/// Records a temporary file to remove if the process is interrupted.
pub fn track(path: &Path) {
    pending().push(path.to_path_buf());
}

/// Forgets a temporary file that was renamed into place or removed.
pub fn untrack(path: &Path) {
    pending().retain(|p| p != path);
}

fn remove_pending() {
    for path in pending().iter() {
        let _ = std::fs::remove_file(path);
    }
}

/// The list, also after a thread panicked while holding it.
fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
