//! Waiting for `map_async` without blocking: a one-shot slot that the callback fills and a future
//! that resolves when it is filled. On native the backend first blocks in `device.poll`, after
//! which the slots are already full; in a browser the callbacks run from the event loop while the
//! future is pending.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Slot {
    result: Option<Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// Resolves with the result of one `map_async`.
#[derive(Clone, Default)]
pub struct MapFuture(Arc<Mutex<Slot>>);

impl MapFuture {
    /// Starts mapping all of `buffer` for reading.
    pub fn map_read(buffer: &wgpu::Buffer, bytes: u64) -> MapFuture {
        let f = MapFuture::default();
        let slot = f.0.clone();
        buffer.slice(..bytes).map_async(wgpu::MapMode::Read, move |result| {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(result);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        f
    }

    /// Whether the callback has run.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn is_done(&self) -> bool {
        self.0.lock().map(|s| s.result.is_some()).unwrap_or(true)
    }
}

impl Future for MapFuture {
    type Output = Result<(), wgpu::BufferAsyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
