//! Stable sorting through one function. Each element type or comparator handed to the standard
//! library's sorts compiles a copy of them (kilobytes each in the WebAssembly module, which has a
//! size budget); the library's sorts share one copy here, on indices.

use std::cmp::Ordering;

/// The permutation that sorts `n` items by `cmp` on their indices, equal items in index order.
pub fn stable_order(n: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

/// Sorts `v` by `cmp`, equal items in their order (as `slice::sort_by`).
pub fn sort_by<T>(v: &mut Vec<T>, cmp: impl Fn(&T, &T) -> Ordering) {
    let order = stable_order(v.len(), &|a, b| cmp(&v[a], &v[b]));
    let mut items: Vec<Option<T>> = std::mem::take(v).into_iter().map(Some).collect();
    v.extend(order.into_iter().map(|i| items[i].take().expect("each index once")));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same order as the standard stable sort, ties (few distinct keys) and short lists
    /// included.
    #[test]
    fn sorts_as_the_standard_stable_sort() {
        let philox = crate::ops::Philox::new(11);
        for (len, levels) in [(0usize, 3u32), (1, 3), (2, 1), (17, 3), (1000, 5), (1000, 0)] {
            let items: Vec<(i32, usize)> = (0..len)
                .map(|j| {
                    let v = philox.normal(0, j as u32, 1, 0);
                    ((if levels > 0 { (v * levels as f32).round() } else { v * 1e6 }) as i32, j)
                })
                .collect();
            let mut want = items.clone();
            want.sort_by(|a, b| b.0.cmp(&a.0));
            let mut got = items;
            sort_by(&mut got, |a, b| b.0.cmp(&a.0));
            assert_eq!(got, want, "len {len}");
        }
    }
}
