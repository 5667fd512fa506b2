//! What every WGSL kernel tells the GPU backend: which shader and entry point (plus preprocessor
//! defines) to compile, how many read-only inputs it binds, its uniform parameters and how many
//! workgroups to dispatch. The kernel types live next to their CPU twins (`LinearKernel` in
//! `linear.rs`, …); the backend (`crate::backend::gpu`) caches pipelines by [`PipelineKey`].
//!
//! Binding convention shared by all shaders in `shaders/`: `@group(0) @binding(0)` is a uniform
//! `Params` struct, bindings `1..=inputs` are read-only storage buffers and binding `inputs + 1`
//! is the read-write output.

/// Invocations per workgroup of every kernel (browsers allow at most 256).
pub const WORKGROUP: u32 = 256;

/// The most workgroups per dispatch dimension that WebGPU guarantees.
pub const MAX_GROUPS: u32 = 65_535;

/// How kernels that reduce (linear layers, layer norm) are written for an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelStyle {
    /// Sums shared through workgroup memory and barriers: GPUs.
    Workgroup,
    /// No workgroup memory and no barriers, each invocation owning whole outputs: adapters that
    /// emulate a GPU on CPU threads (SwiftShader, llvmpipe), where one barrier suspends and
    /// resumes every invocation of the workgroup and costs more than the arithmetic around it.
    Flat,
}

impl KernelStyle {
    /// `Flat` for adapters that run on the CPU, `Workgroup` otherwise.
    pub fn for_adapter(cpu_device: bool, names: &[&str]) -> Self {
        if is_software_adapter(cpu_device, names) { KernelStyle::Flat } else { KernelStyle::Workgroup }
    }
}

/// Whether an adapter emulates a GPU on the CPU: it says so (`cpu_device`: a CPU device type,
/// or the browser's fallback adapter), or one of its names is a known software rasteriser.
pub fn is_software_adapter(cpu_device: bool, names: &[&str]) -> bool {
    const SOFTWARE: [&str; 4] = ["swiftshader", "llvmpipe", "lavapipe", "basic render driver"];
    cpu_device
        || names.iter().any(|n| {
            let n = n.to_lowercase();
            SOFTWARE.iter().any(|s| n.contains(s))
        })
}

/// A WGSL source file from `shaders/`, as `build.rs` ships it (without comments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// The [`Shader`] built from `shaders/<name>.wgsl`.
macro_rules! shader {
    ($name:literal) => {
        $crate::ops::kernel::Shader {
            name: $name,
            source: include_str!(concat!(env!("OUT_DIR"), "/shaders/", $name, ".wgsl")),
        }
    };
}
pub(crate) use shader;

/// What identifies a compiled pipeline: shader, entry point and the (sorted) defines.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub shader: Shader,
    pub entry: &'static str,
    pub defines: Vec<&'static str>,
}

/// One dispatch of a WGSL kernel (object-safe: the backend holds `Box<dyn Kernel>`).
pub trait Kernel {
    fn shader(&self) -> Shader;
    fn entry(&self) -> &'static str;
    /// Preprocessor names that are defined for this variant (`#ifdef NAME` in the shader).
    fn defines(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Read-only storage bindings (`1..=inputs`); the output is binding `inputs + 1`.
    fn inputs(&self) -> u32;
    /// The uniform `Params` struct as 32-bit words (the ops' kernels: [`TypedKernel::uniform`]
    /// as [`Uniform::words`]).
    fn params(&self) -> Vec<u32>;
    /// Workgroups in x, y, z.
    fn workgroups(&self) -> [u32; 3];

    fn key(&self) -> PipelineKey {
        let mut defines = self.defines();
        defines.sort_unstable();
        defines.dedup();
        PipelineKey { shader: self.shader(), entry: self.entry(), defines }
    }
}

/// A kernel whose `Params` struct has a Rust mirror: [`Kernel::params`] is its words.
pub trait TypedKernel: Kernel {
    type Params: Uniform;
    fn uniform(&self) -> Self::Params;
}

/// A `#[repr(C)]` mirror of a shader's uniform `Params` struct, declared with `uniform!` (which
/// lists its fields for the test that compares them with the WGSL layout).
pub trait Uniform: bytemuck::Pod {
    /// Every field in declaration order.
    const FIELDS: &'static [Field];

    /// The struct as the 32-bit words the backend uploads.
    fn words(&self) -> Vec<u32> {
        bytemuck::cast_slice(std::slice::from_ref(self)).to_vec()
    }
}

/// One field of a [`Uniform`] struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// The Rust type as written (`u32`, `f32`).
    pub ty: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// Declares a `#[repr(C)]` `Pod` parameter struct and implements [`Uniform`] for it.
macro_rules! uniform {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident: $ty:ty),* $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }

        impl $crate::ops::kernel::Uniform for $name {
            const FIELDS: &'static [$crate::ops::kernel::Field] = &[$($crate::ops::kernel::Field {
                name: stringify!($field),
                ty: stringify!($ty),
                offset: std::mem::offset_of!($name, $field),
                size: size_of::<$ty>(),
            }),*];
        }
    };
}
pub(crate) use uniform;

/// Spreads `groups` workgroups over x and y so neither exceeds [`MAX_GROUPS`]; shaders recover the
/// flat index as `(wid.y * nwg.x + wid.x)` and skip the few extra groups.
pub fn grid(groups: u32) -> [u32; 3] {
    if groups <= MAX_GROUPS {
        [groups, 1, 1]
    } else {
        [MAX_GROUPS, groups.div_ceil(MAX_GROUPS), 1]
    }
}

/// Workgroups for one invocation per element of `n`.
pub fn grid_for(n: usize) -> [u32; 3] {
    grid((n as u32).div_ceil(WORKGROUP))
}

/// A `u32` parameter from a size (sizes are validated against buffer limits before dispatch).
pub fn u(v: usize) -> u32 {
    v as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_adapters_get_flat_kernels() {
        assert_eq!(KernelStyle::for_adapter(true, &["anything"]), KernelStyle::Flat);
        assert_eq!(KernelStyle::for_adapter(false, &["llvmpipe (LLVM 15.0.6, 256 bits)"]), KernelStyle::Flat);
        assert_eq!(KernelStyle::for_adapter(false, &["", "SwiftShader Device (Subzero)"]), KernelStyle::Flat);
        assert_eq!(KernelStyle::for_adapter(false, &["NVIDIA H100 80GB HBM3", "NVIDIA"]), KernelStyle::Workgroup);
    }
}
