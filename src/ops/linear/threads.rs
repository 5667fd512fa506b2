//! A large linear layer split across the persistent worker threads of `ops::workers` (native
//! targets): by input rows when there are enough of them (each thread writes its own rows of the
//! output), else by output columns.

use super::{Simd, Weights, columns};
use crate::ops::workers;

/// Multiply–adds from which a call is split across threads. The 448 × 896 trunk layers at one or
/// two rows are not: waking a worker cost more than half their time (2 cores, batch 1: 59–94 µs
/// on one thread, 111–130 µs on two).
pub(super) const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Input rows per thread from which threads split the rows rather than the columns (each
/// decodes and packs every weight block, which many rows amortise; 64 references measured faster
/// split by columns, 256 the same either way).
const ROW_SPLIT_MIN_ROWS: usize = 128;

/// How a call is shared among the worker threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Each thread takes whole input rows (and every output column).
    Rows(usize),
    /// Each thread takes a range of output columns (and every input row).
    Columns(usize),
}

/// The split of an `[m, k] · [k, n]` product, or `None` where one thread does it all.
pub(super) fn plan(m: usize, n: usize, k: usize) -> Option<Split> {
    if threads() > 1 && m * n * k >= PARALLEL_MIN_MACS {
        if m >= ROW_SPLIT_MIN_ROWS * threads() {
            return Some(Split::Rows(threads()));
        }
        let threads = threads().min(n / 16).max(1);
        if threads > 1 {
            return Some(Split::Columns(threads));
        }
    }
    None
}

/// Threads that share a large layer (see `ops::workers`).
pub fn threads() -> usize {
    workers::threads()
}

/// Each of `threads` parts of the input rows (multiples of 4) through all output columns.
pub(super) fn split_by_rows(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
    let (n, k) = (w.rows, w.cols);
    // Multiples of the 4-row tile, so only the last part has a ragged tile.
    let step = m.div_ceil(threads).next_multiple_of(4);
    let parts: Vec<_> = x.chunks(step * k).zip(out.chunks_mut(step * n)).collect();
    workers::for_each(parts, |(xs, os)| columns(simd, xs, xs.len() / k, w, bias, 0, n, os, n));
}

/// Each of `threads` ranges of output columns (multiples of 8) for all input rows, gathered into
/// `out` afterwards unless there is one row.
pub(super) fn split_by_columns(simd: Simd, x: &[f32], m: usize, w: &Weights, bias: Option<&[f32]>, out: &mut [f32], threads: usize) {
    let n = w.rows;
    let step = n.div_ceil(threads).next_multiple_of(8);
    if m == 1 {
        // One row: each part's columns are a contiguous slice of the output.
        let jobs: Vec<_> = out.chunks_mut(step).enumerate().collect();
        return workers::for_each(jobs, |(t, part)| {
            let a = t * step;
            columns(simd, x, m, w, bias, a, a + part.len(), part, part.len())
        });
    }
    let ranges: Vec<(usize, usize)> = (0..n).step_by(step).map(|a| (a, (a + step).min(n))).collect();
    let mut parts: Vec<Vec<f32>> = ranges.iter().map(|(a, b)| vec![0.0; m * (b - a)]).collect();
    let jobs: Vec<_> = ranges.iter().zip(parts.iter_mut()).collect();
    workers::for_each(jobs, |(&(a, b), part)| columns(simd, x, m, w, bias, a, b, part, b - a));
    for ((a, b), part) in ranges.iter().zip(&parts) {
        let len = b - a;
        for i in 0..m {
            out[i * n + a..i * n + b].copy_from_slice(&part[i * len..(i + 1) * len]);
        }
    }
}
