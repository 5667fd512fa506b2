//! Latent draws `z = μ + σ·ε` (σ = exp(½ log σ²)) from a network head `[μ ‖ log σ²]`, with ε from a
//! counter-based generator so the stream is the same on every backend and for every batching.
//!
//! ε for latent element `j` of stream `g` (0 technical, 1 biological, 2 perturbation), input row
//! `row` and sample `s`: Philox4x32-10 keyed by the seed (k0 = low 32 bits, k1 = high), counter
//! `(j / 4, row, s, g)`, word `j % 4`; each pair of words becomes two normals by Box–Muller:
//! `u(x) = ((x >> 8) + ½) · 2⁻²⁴`, `r = √(−2 ln u(w0))`, `(r cos 2πu(w1), r sin 2πu(w1))`, same for
//! words 2, 3. The u32 stream is bit-identical everywhere; the normals agree to f32 rounding of
//! `ln`, `cos` and `sin`.

/// Seeded sampling; `None` in a call means mean estimation (z = μ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noise {
    pub seed: u64,
    /// Index of the first sample drawn by this call.
    pub first_sample: u32,
}

/// Which columns of the head belong to which noise stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// Latent width D (the head is `[rows, 2·D]`).
    pub latent: usize,
    /// Elements `j < split` use stream `lo` with index `j`; the rest use `hi` with index `j − split`.
    pub split: usize,
    pub lo: u32,
    pub hi: u32,
}

impl Streams {
    /// The whole latent in one stream.
    pub fn single(latent: usize, stream: u32) -> Streams {
        Streams { latent, split: latent, lo: stream, hi: stream }
    }

    /// The `(stream, element)` Philox counter of latent column `j`.
    pub fn of(&self, j: usize) -> (u32, u32) {
        if j < self.split { (self.lo, j as u32) } else { (self.hi, (j - self.split) as u32) }
    }
}

/// The Philox4x32-10 counter-based generator (Salmon et al., SC'11).
#[derive(Clone, Copy, Debug)]
pub struct Philox {
    pub key: [u32; 2],
}

impl Philox {
    const M0: u32 = 0xD251_1F53;
    const M1: u32 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;

    pub fn new(seed: u64) -> Philox {
        Philox { key: [seed as u32, (seed >> 32) as u32] }
    }

    /// Four random words for one counter.
    pub fn block(&self, counter: [u32; 4]) -> [u32; 4] {
        let mut c = counter;
        let mut k = self.key;
        for round in 0..10 {
            if round > 0 {
                k[0] = k[0].wrapping_add(Self::W0);
                k[1] = k[1].wrapping_add(Self::W1);
            }
            let p0 = Self::M0 as u64 * c[0] as u64;
            let p1 = Self::M1 as u64 * c[2] as u64;
            let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
            let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
            c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
        }
        c
    }

    /// The standard normal for latent element `j` of `stream`, input row `row`, sample `sample`.
    pub fn normal(&self, stream: u32, j: u32, row: u32, sample: u32) -> f32 {
        let w = self.block([j / 4, row, sample, stream]);
        let pair = ((j % 4) / 2) as usize * 2;
        let r = (-2.0 * uniform(w[pair]).ln()).sqrt();
        let theta = std::f32::consts::TAU * uniform(w[pair + 1]);
        if j % 2 == 0 { r * theta.cos() } else { r * theta.sin() }
    }
}

/// Maps a random word to (0, 1), never 0 so `ln` stays finite.
pub fn uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// What every backend checks: the head (`(rows, cols)`) is `[μ ‖ log σ²]` of the streams' latent.
pub fn check(head: (usize, usize), streams: Streams) -> crate::Result<()> {
    if head.1 != 2 * streams.latent {
        return Err(crate::Error::request(format!(
            "reparameterize: head has {} columns for latent {}",
            head.1, streams.latent
        )));
    }
    Ok(())
}

/// CPU twin. `head` is `[rows, 2·D]`; `out` is `[samples · rows, D]`, row `s · rows + r` holding
/// sample `first_sample + s` of input row `r`.
pub fn cpu(head: &[f32], streams: Streams, noise: Option<Noise>, out: &mut [f32]) {
    let d = streams.latent;
    let rows = head.len() / (2 * d);
    let samples = if rows == 0 { 0 } else { out.len() / (rows * d) };
    assert_eq!(out.len(), samples * rows * d, "reparameterize output");
    let philox = noise.map(|n| (Philox::new(n.seed), n.first_sample));
    for s in 0..samples {
        for r in 0..rows {
            let h = &head[r * 2 * d..(r + 1) * 2 * d];
            let o = &mut out[(s * rows + r) * d..(s * rows + r + 1) * d];
            for j in 0..d {
                o[j] = match philox {
                    None => h[j],
                    Some((p, first)) => {
                        let (stream, idx) = streams.of(j);
                        let eps = p.normal(stream, idx, r as u32, first + s as u32);
                        h[j] + (0.5 * h[d + j]).exp() * eps
                    }
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GPU kernel (shaders/reparameterize.wgsl)

use super::kernel::{Kernel, Shader, TypedKernel, Uniform, grid_for, shader, u, uniform};

pub const SHADER: Shader = shader!("reparameterize");

/// What a [`ReparameterizeKernel`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// z = μ. Bindings: head, z.
    Mean,
    /// z = μ + σ·ε. Bindings: head, z.
    Sample(Noise),
    /// Raw Philox blocks for `blocks` counters (the bit-identity check). Bindings: counters
    /// (4 words each), words.
    Words { seed: u64, blocks: usize },
}

uniform! {
    /// `Params` of shaders/reparameterize.wgsl.
    pub struct ReparameterizeParams {
        pub rows: u32,
        /// D.
        pub latent: u32,
        pub samples: u32,
        /// Elements `j < split` use stream `stream_lo` with index `j`, the rest `stream_hi`.
        pub split: u32,
        pub stream_lo: u32,
        pub stream_hi: u32,
        /// Seed, low and high 32 bits.
        pub key0: u32,
        pub key1: u32,
        pub first_sample: u32,
        /// Counters of [`Draw::Words`].
        pub blocks: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

/// One invocation per output element (or per counter for [`Draw::Words`]).
#[derive(Clone, Copy, Debug)]
pub struct ReparameterizeKernel {
    pub rows: usize,
    pub samples: usize,
    pub streams: Streams,
    pub draw: Draw,
}

impl Kernel for ReparameterizeKernel {
    fn shader(&self) -> Shader {
        SHADER
    }
    fn entry(&self) -> &'static str {
        match self.draw {
            Draw::Mean => "mean",
            Draw::Sample(_) => "sample",
            Draw::Words { .. } => "philox_words",
        }
    }
    fn defines(&self) -> Vec<&'static str> {
        match self.draw {
            Draw::Words { .. } => vec!["RAW"],
            _ => Vec::new(),
        }
    }
    fn inputs(&self) -> u32 {
        1
    }
    fn params(&self) -> Vec<u32> {
        self.uniform().words()
    }
    fn workgroups(&self) -> [u32; 3] {
        match self.draw {
            Draw::Words { blocks, .. } => grid_for(blocks),
            _ => grid_for(self.samples * self.rows * self.streams.latent),
        }
    }
}

impl TypedKernel for ReparameterizeKernel {
    type Params = ReparameterizeParams;
    fn uniform(&self) -> ReparameterizeParams {
        let (seed, first_sample, blocks) = match self.draw {
            Draw::Mean => (0, 0, 0),
            Draw::Sample(n) => (n.seed, n.first_sample, 0),
            Draw::Words { seed, blocks } => (seed, 0, blocks),
        };
        let s = self.streams;
        ReparameterizeParams {
            rows: u(self.rows),
            latent: u(s.latent),
            samples: u(self.samples),
            split: u(s.split),
            stream_lo: s.lo,
            stream_hi: s.hi,
            key0: seed as u32,
            key1: (seed >> 32) as u32,
            first_sample,
            blocks: u(blocks),
            ..bytemuck::Zeroable::zeroed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_random123_known_answers() {
        assert_eq!(Philox::new(0).block([0; 4]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        let all = Philox { key: [u32::MAX; 2] };
        assert_eq!(all.block([u32::MAX; 4]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        let pi = Philox { key: [0xa4093822, 0x299f31d0] };
        assert_eq!(
            pi.block([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn normals_have_unit_variance() {
        let p = Philox::new(7);
        let xs: Vec<f32> = (0..20_000).map(|j| p.normal(1, j, 3, 0)).collect();
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }

    #[test]
    fn mean_mode_returns_mu_for_every_sample() {
        let head = [1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0];
        let mut out = [0.0; 8];
        cpu(&head, Streams::single(2, 0), None, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
    }
}
