//! Persistent worker threads for the CPU twins (native targets only; the wasm build runs every
//! op on the calling thread).
//!
//! Spawning and joining OS threads costs tens of µs per call, and a forward pass splits about ten
//! layers, so the workers live for the process: a private `rayon-core` pool of `threads() − 1`
//! threads (so a host program's own rayon configuration is untouched), with the calling thread
//! running the first part itself.

use std::sync::OnceLock;

/// Threads that share a large layer: `REFCAST_THREADS`, else the available parallelism.
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("REFCAST_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    })
}

/// The pool of `threads() − 1` workers, started on first use; `None` with one thread or when
/// the system refuses new threads (everything then runs on the caller).
fn pool() -> Option<&'static rayon_core::ThreadPool> {
    static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let workers = threads() - 1;
        if workers == 0 {
            return None;
        }
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("refcast-cpu-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Calls `f` on every item, the first on the calling thread and the rest on the workers, and
/// returns when all are done. A panic in any call is resumed on the caller after the others
/// finish. Calls from inside a worker (nested use) are fine: the pool's threads keep stealing
/// while they wait.
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    let mut items = items.into_iter();
    let Some(first) = items.next() else { return };
    let Some(pool) = pool().filter(|_| items.len() > 0) else {
        f(first);
        items.for_each(&f);
        return;
    };
    let f = &f;
    pool.in_place_scope(|s| {
        for item in items {
            s.spawn(move |_| f(item));
        }
        f(first);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once() {
        for n in [0, 1, 2, 3, 17] {
            let mut out = vec![0usize; n];
            for_each(out.iter_mut().enumerate().collect(), |(i, o)| *o += i + 1);
            assert_eq!(out, (1..=n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn panics_reach_the_caller_after_the_others_finish() {
        let done = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each((0..8).collect(), |i: usize| {
                if i == 5 {
                    panic!("part {i}");
                }
                done.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(r.is_err());
        assert_eq!(done.load(Ordering::SeqCst), 7);
        // The pool still works afterwards.
        let sum = AtomicUsize::new(0);
        for_each((0..4).collect(), |i: usize| {
            sum.fetch_add(i, Ordering::SeqCst);
        });
        assert_eq!(sum.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn nested_use_completes() {
        let sum = AtomicUsize::new(0);
        for_each((0..4).collect(), |i: usize| {
            for_each((0..4).collect(), |j: usize| {
                sum.fetch_add(i * 4 + j, Ordering::SeqCst);
            });
        });
        assert_eq!(sum.load(Ordering::SeqCst), (0..16).sum::<usize>());
    }

    #[test]
    fn callers_on_many_threads_share_the_pool() {
        let sum = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..4 {
                let sum = &sum;
                s.spawn(move || {
                    for _ in 0..50 {
                        for_each((0..3).collect(), |i: usize| {
                            sum.fetch_add(t + i, Ordering::SeqCst);
                        });
                    }
                });
            }
        });
        assert_eq!(sum.load(Ordering::SeqCst), 50 * (3 * (0 + 1 + 2 + 3) + 4 * 3));
    }
}
