//! What a warm pass reuses instead of creating: shader modules and pipelines (by shader, entry
//! point and defines), one pipeline layout per input count, and bind groups.
//!
//! Bind groups are keyed by the buffers they bind (wgpu's buffer handles compare by identity) and
//! the bytes bound, and kept in a least-recently-used cache of [`BIND_GROUPS`] entries. A cached
//! bind group holds its buffers alive. For pooled buffers that costs nothing: the pool keeps them
//! anyway, and [`GpuBackend::release_idle`] empties both. A weight buffer would outlive its
//! [`GpuLinear`](super::GpuLinear), so the layer removes the entries that bind its buffers when it
//! drops; the bound only keeps a workload of ever-new shapes from growing the cache without end.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use super::{Bound, GpuBackend, PARAM_SLOT, preprocess};
use crate::error::Result;
use crate::ops::kernel::Kernel;

/// Bind groups kept (a forward pass binds a few hundred distinct sets of buffers).
pub(super) const BIND_GROUPS: usize = 4096;

/// A map of at most `capacity` entries that drops the least recently used entry to make room.
/// A hit only stamps its entry; the order is brought up to date when an entry must go.
pub(super) struct Lru<K, V> {
    capacity: usize,
    entries: HashMap<K, Entry<V>>,
    /// Every key once, under the tick it was placed at (its last use then), oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
}

struct Entry<V> {
    value: V,
    /// The tick of the last use.
    used: u64,
    /// The tick the key sits under in `order` (at most `used`).
    placed: u64,
}

impl<K: Eq + Hash + Clone, V> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "an LRU cache needs room for one entry");
        Lru { capacity, entries: HashMap::new(), order: BTreeMap::new(), tick: 0 }
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.tick += 1;
        let e = self.entries.get_mut(key)?;
        e.used = self.tick;
        Some(&e.value)
    }

    /// Adds or replaces `key`, dropping the least recently used entry when full.
    pub fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if let Some(e) = self.entries.get_mut(&key) {
            (e.value, e.used) = (value, self.tick);
            return;
        }
        if self.entries.len() == self.capacity {
            self.evict_oldest();
        }
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, Entry { value, used: self.tick, placed: self.tick });
    }

    fn evict_oldest(&mut self) {
        while let Some((placed, key)) = self.order.pop_first() {
            let e = self.entries.get_mut(&key).expect("every key in the order has an entry");
            if e.used == placed {
                // Every other entry was used at or after its place, which is later than this.
                self.entries.remove(&key);
                return;
            }
            // Used since it was placed: it goes where its last use puts it.
            e.placed = e.used;
            self.order.insert(e.used, key);
        }
    }

    /// Keeps only the entries whose key passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|key, e| {
            let kept = keep(key);
            if !kept {
                order.remove(&e.placed);
            }
            kept
        });
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }
}

/// One binding of a cached bind group. Every binding starts at offset 0, so a buffer and the
/// bytes bound name it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct BindingKey {
    buffer: wgpu::Buffer,
    size: u64,
}

/// Bind groups by their storage bindings in binding order (the parameter slot is bound the same
/// way in all of them, and the input count is one less than the bindings).
pub(super) type BindGroupCache = Lru<Vec<BindingKey>, wgpu::BindGroup>;

/// Drops the bind groups that bind a buffer for which `dropped` holds.
pub(super) fn forget_buffers(cache: &mut BindGroupCache, dropped: impl Fn(&wgpu::Buffer) -> bool) {
    cache.retain(|bindings| !bindings.iter().any(|b| dropped(&b.buffer)));
}

impl GpuBackend {
    pub(super) fn layout(&mut self, inputs: u32) -> &(wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let device = &self.device;
        self.layouts.entry(inputs).or_insert_with(|| {
            let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            };
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: wgpu::BufferSize::new(PARAM_SLOT),
                },
                count: None,
            }];
            entries.extend((1..=inputs).map(|b| storage(b, true)));
            entries.push(storage(inputs + 1, false));
            let label = format!("refcast layout ({inputs} inputs)");
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        })
    }

    pub(super) fn pipeline(&mut self, k: &dyn Kernel) -> Result<wgpu::ComputePipeline> {
        let key = k.key();
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let module_key = (key.shader, key.defines.clone());
        if !self.modules.contains_key(&module_key) {
            let source = preprocess(key.shader.name, key.shader.source, &key.defines)?;
            let label = format!("shaders/{}.wgsl {:?}", key.shader.name, key.defines);
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            self.check()?;
            self.modules.insert(module_key.clone(), module);
        }
        let layout = self.layout(k.inputs()).1.clone();
        let label = format!("{}::{} {:?}", key.shader.name, key.entry, key.defines);
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&layout),
            module: &self.modules[&module_key],
            entry_point: Some(key.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        self.check()?;
        self.pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The bind group of the parameter slot and `bindings` (`inputs` of them read-only, then the
    /// output), from the cache when these buffers were bound so before.
    pub(super) fn bind_group(&mut self, inputs: u32, bindings: &[Bound<'_>]) -> wgpu::BindGroup {
        let key: Vec<BindingKey> = bindings.iter().map(|b| BindingKey { buffer: b.buffer.clone(), size: b.size }).collect();
        if let Some(bg) = self.bind_groups.borrow_mut().get(&key) {
            return bg.clone();
        }
        let layout = self.layout(inputs).0.clone();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_buffer,
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_SLOT),
            }),
        }];
        for (i, b) in bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(b.size),
                }),
            });
        }
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        self.bind_groups.borrow_mut().insert(key, bg.clone());
        bg
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;
    use crate::backend::{Backend, GpuBackend};
    use crate::quant::{DType, Matrix};

    #[test]
    fn hits_and_misses() {
        let mut lru = Lru::new(4);
        assert_eq!(lru.get(&"a"), None);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.get(&"b"), Some(&2));
        assert_eq!(lru.get(&"c"), None);
        lru.insert("a", 3);
        assert_eq!(lru.get(&"a"), Some(&3), "inserting again replaces the value");
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn the_least_recently_used_entry_leaves_first() {
        let mut lru = Lru::new(3);
        for (k, v) in [(1, 'a'), (2, 'b'), (3, 'c')] {
            lru.insert(k, v);
        }
        // A read counts as a use: 1 is now the newest, 2 the oldest.
        assert_eq!(lru.get(&1), Some(&'a'));
        lru.insert(4, 'd');
        assert_eq!(lru.get(&2), None, "the oldest entry made room");
        // Re-inserting counts as a use too: 3 is now the oldest.
        lru.insert(1, 'e');
        lru.insert(4, 'f');
        lru.insert(5, 'g');
        assert_eq!(lru.get(&3), None);
        assert_eq!([1, 4, 5].map(|k| lru.get(&k).copied()), [Some('e'), Some('f'), Some('g')]);
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let mut lru = Lru::new(8);
        for i in 0..1000 {
            lru.insert(i, i * 2);
            assert!(lru.len() <= 8);
        }
        assert_eq!(lru.len(), 8);
        assert!((992..1000).all(|i| lru.get(&i) == Some(&(i * 2))), "the newest entries stay");
        assert!((0..992).all(|i| lru.get(&i).is_none()));
    }

    #[test]
    fn retain_and_clear_drop_entries_and_their_places() {
        let mut lru = Lru::new(4);
        for i in 0..4 {
            lru.insert(i, i);
        }
        lru.retain(|k| k % 2 == 1);
        assert_eq!(lru.len(), 2);
        assert!(lru.get(&0).is_none() && lru.get(&2).is_none());
        // Room freed by retain is used before anything is evicted.
        lru.insert(10, 10);
        lru.insert(11, 11);
        assert!([1, 3, 10, 11].iter().all(|k| lru.get(k).is_some()));
        lru.clear();
        assert_eq!(lru.len(), 0);
        lru.insert(1, 1);
        assert_eq!(lru.get(&1), Some(&1));
    }

    #[test]
    fn agrees_with_a_plain_list_ordered_by_use() {
        // The reference: (key, value) pairs, least recently used first.
        let mut list: Vec<(u32, u32)> = Vec::new();
        let mut lru = Lru::new(5);
        let mut state = 0x2545_f491_u32;
        for step in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let key = state % 12;
            match (state >> 8) % 8 {
                0..=3 => {
                    let want = list.iter().position(|&(k, _)| k == key).map(|i| list.remove(i));
                    list.extend(want);
                    assert_eq!(lru.get(&key).copied(), want.map(|(_, v)| v), "step {step}: get {key}");
                }
                4..=6 => {
                    list.retain(|&(k, _)| k != key);
                    if list.len() == 5 {
                        list.remove(0);
                    }
                    list.push((key, step));
                    lru.insert(key, step);
                }
                _ => {
                    list.retain(|&(k, _)| k != key);
                    lru.retain(|&k| k != key);
                }
            }
            assert_eq!(lru.len(), list.len(), "step {step}");
        }
    }

    #[test]
    fn bind_groups_are_reused_and_leave_with_their_linear_layer() {
        let mut g = match pollster::block_on(GpuBackend::new()) {
            Ok(g) => g,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("CI=true but no GPU backend: {e}"),
            Err(e) => return eprintln!("skipping a GPU test: {e}"),
        };
        let w1 = g.linear_weights(&Matrix::encode(8, 32, &[0.5; 256], DType::Q8_0), &[0.0; 8]).unwrap();
        let w2 = g.linear_weights(&Matrix::encode(8, 32, &[0.25; 256], DType::F32), &[1.0; 8]).unwrap();
        let x = g.tensor(&[1.0; 64], 2, 32).unwrap();
        let pass = |g: &mut GpuBackend| {
            let (a, b) = (g.linear(&x, &w1).unwrap(), g.linear(&x, &w2).unwrap());
            pollster::block_on(g.read(&[&a, &b])).unwrap();
            g.bind_groups.borrow().len()
        };
        let cold = pass(&mut g);
        assert!(cold >= 2);
        assert_eq!(pass(&mut g), cold, "a warm pass finds every bind group cached");
        let w1_buffers = [w1.bias.clone(), w1.chunks[0].weights.clone(), w1.chunks[0].scales.clone().unwrap()];
        drop(w1);
        let cache = g.bind_groups.borrow();
        assert!(cache.len() < cold && cache.len() > 0, "only the dropped layer's bind groups go");
        assert!(cache.keys().flatten().all(|b| !w1_buffers.contains(&b.buffer)));
    }
}
