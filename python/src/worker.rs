//! The engine's own thread. An [`Engine`] is not `Send` (the GPU backend shares buffers through
//! `Rc`), so it is opened, used and dropped on one thread of its own; Python threads send it jobs
//! and wait for the answer with the GIL released. Jobs run one at a time, in the order sent.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use refcast::format::{MAX_MODEL_BYTES, ModelConfig, ModelFile, checksum};
use refcast::{BackendChoice, BackendKind, Engine, Error, Result};

type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// What a loaded model says about itself, sent back from the engine's thread.
pub struct Opened {
    pub config: ModelConfig,
    pub choice: BackendChoice,
    /// Backend and adapter, for people ([`Engine::describe`]).
    pub describe: String,
    pub checksum: checksum::Verified,
}

pub struct EngineThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl EngineThread {
    /// Reads, checks and loads the model at `path` on a new thread, on the backend the library's
    /// policy picks for `kind`.
    pub fn open(kind: BackendKind, path: PathBuf, sha256: Option<String>) -> Result<(EngineThread, Opened)> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (opened_tx, opened_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("refcast-engine".into())
            .spawn(move || {
                let opened = open(kind, &path, sha256.as_deref());
                let mut engine = match opened {
                    Ok((engine, opened)) => {
                        let _ = opened_tx.send(Ok(opened));
                        engine
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for job in inbox {
                    job(&mut engine);
                }
            })
            .map_err(|e| Error::Io { path: "the engine thread".into(), source: e })?;
        let opened = opened_rx.recv().unwrap_or_else(|_| Err(stopped()))?;
        Ok((EngineThread { jobs: Some(jobs), thread: Some(thread) }, opened))
    }

    /// Runs `job` on the engine's thread and waits for its result.
    pub fn run<T: Send + 'static>(&self, job: impl FnOnce(&mut Engine) -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move |engine| {
            let _ = tx.send(job(engine));
        });
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(stopped());
        }
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for EngineThread {
    /// Frees the model (and on the GPU its device) before returning.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> Error {
    Error::Request("the model's engine thread stopped after a panic (its message is on standard error); load the model again".into())
}

fn open(kind: BackendKind, path: &Path, sha256: Option<&str>) -> Result<(Engine, Opened)> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_MODEL_BYTES {
        return Err(Error::Format(format!("{}: {size} bytes, over the {MAX_MODEL_BYTES}-byte limit for a model file", path.display())));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let checksum = checksum::verify_file(path, &bytes, sha256)?;
    let engine = pollster::block_on(Engine::open(kind, || ModelFile::from_bytes(&bytes)))?;
    let opened = Opened { config: engine.config().clone(), choice: engine.choice().clone(), describe: engine.describe(), checksum };
    Ok((engine, opened))
}
