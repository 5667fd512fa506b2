//! Reuse of GPU buffers. Intermediate tensors, uploaded host arrays and read-back staging buffers
//! come from size-classed free lists; a tensor hands its buffer back when dropped.
//!
//! One hazard shapes the rules: `queue.write_buffer` takes effect at the start of the next
//! submission, before the commands recorded so far. So a buffer that a not yet submitted dispatch
//! binds may be reused as a kernel output (kernels run in recording order) but not as an upload
//! target: the backend reports such buffers with [`Pool::mark_used`], and [`Pool::take`] with
//! `for_upload` skips them until the next submission ([`Pool::advance_epoch`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};

/// Smallest buffer handed out (bytes).
const MIN_BYTES: u64 = 256;

/// Bytes actually allocated for a request: the next size of the form 2^k or 1.5 · 2^k, so at most
/// a third of the buffer is idle and repeated shapes hit the same class.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(MIN_BYTES);
    let p = b.next_power_of_two();
    if b <= p / 4 * 3 { p / 4 * 3 } else { p }
}

struct Free {
    buffer: wgpu::Buffer,
    id: u64,
    /// Bound by a dispatch that is not yet submitted.
    dirty: bool,
}

#[derive(Default)]
pub struct PoolInner {
    free: HashMap<(u64, wgpu::BufferUsages), Vec<Free>>,
    /// Ids bound by dispatches since the last submission.
    used: HashSet<u64>,
    next_id: u64,
    /// Bytes allocated through the pool (for diagnostics).
    pub allocated: u64,
}

impl PoolInner {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A buffer on loan from the pool; it goes back when the last handle drops.
pub struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    usage: wgpu::BufferUsages,
    pool: Weak<RefCell<PoolInner>>,
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PooledBuffer(#{}, {} bytes)", self.id, self.buffer.size())
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else { return };
        if let Ok(mut pool) = pool.try_borrow_mut() {
            let dirty = pool.used.contains(&self.id);
            pool.free.entry((self.buffer.size(), self.usage)).or_default().push(Free {
                buffer: self.buffer.clone(),
                id: self.id,
                dirty,
            });
        }
    }
}

#[derive(Clone, Default)]
pub struct Pool(pub Rc<RefCell<PoolInner>>);

impl Pool {
    /// A buffer of at least `bytes` with `usage`.
    pub fn take(&self, device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages, for_upload: bool) -> Rc<PooledBuffer> {
        let size = size_class(bytes);
        let mut inner = self.0.borrow_mut();
        if let Some(list) = inner.free.get_mut(&(size, usage)) {
            let pick = if for_upload { list.iter().rposition(|f| !f.dirty) } else { list.len().checked_sub(1) };
            if let Some(i) = pick {
                let f = list.remove(i);
                return Rc::new(PooledBuffer { buffer: f.buffer, id: f.id, usage, pool: Rc::downgrade(&self.0) });
            }
        }
        let id = inner.next_id();
        inner.allocated += size;
        drop(inner);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("refcast pooled buffer"),
            size,
            usage,
            mapped_at_creation: false,
        });
        Rc::new(PooledBuffer { buffer, id, usage, pool: Rc::downgrade(&self.0) })
    }

    /// Notes that a dispatch recorded now binds buffer `id`.
    pub fn mark_used(&self, id: u64) {
        self.0.borrow_mut().used.insert(id);
    }

    /// Marks a submission: every idle buffer is a safe upload target again.
    pub fn advance_epoch(&self) {
        let mut inner = self.0.borrow_mut();
        inner.used.clear();
        for f in inner.free.values_mut().flatten() {
            f.dirty = false;
        }
    }

    /// Frees every idle buffer.
    pub fn clear(&self) {
        let mut inner = self.0.borrow_mut();
        let idle: u64 = inner.free.iter().map(|(&(size, _), list)| size * list.len() as u64).sum();
        inner.allocated -= idle;
        inner.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_half() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(257), 384);
        assert_eq!(size_class(384), 384);
        assert_eq!(size_class(385), 512);
        for b in [1000u64, 4097, 25_165_824, 100_000_001] {
            let c = size_class(b);
            assert!(c >= b && c as f64 <= b as f64 * 1.5, "{b} -> {c}");
        }
    }
}
