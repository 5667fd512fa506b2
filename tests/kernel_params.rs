//! Every kernel's Rust parameter struct against its shader's uniform `Params` struct as naga lays
//! it out: the shader preprocessed with the kernel's defines (as the GPU backend compiles it),
//! then size, field names, offsets, sizes and scalar types compared one by one, for every entry
//! point and define set a kernel uses.

use naga::{AddressSpace, Scalar, ScalarKind, TypeInner};
use refcast::backend::gpu::preprocess;
use refcast::ops::activation::ActivationKernel;
use refcast::ops::add::AddKernel;
use refcast::ops::assemble::AssembleKernel;
use refcast::ops::fill::FillKernel;
use refcast::ops::kernel::{KernelStyle, TypedKernel, Uniform};
use refcast::ops::layer_norm::LayerNormKernel;
use refcast::ops::linear::LinearKernel;
use refcast::ops::output::{OutputKernel, Transform};
use refcast::ops::prior_embed::PriorEmbedKernel;
use refcast::ops::reparameterize::{Draw, ReparameterizeKernel, Streams};
use refcast::ops::{Activation, Noise};
use refcast::quant::DType;

const STYLES: [KernelStyle; 2] = [KernelStyle::Workgroup, KernelStyle::Flat];

/// Compares `k`'s parameter struct with the `Params` struct that its shader binds at
/// `@group(0) @binding(0)`, and its words with the struct's bytes.
fn check<K: TypedKernel>(k: K) {
    let (shader, entry, defines) = (k.shader(), k.entry(), k.defines());
    let what = format!("{}::{entry} {defines:?}", shader.name);
    let source = preprocess(shader.name, shader.source, &defines).unwrap();
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
    assert!(module.entry_points.iter().any(|e| e.name == entry), "{what}: no entry point {entry}");

    let uniform = module
        .global_variables
        .iter()
        .map(|(_, v)| v)
        .find(|v| v.space == AddressSpace::Uniform)
        .unwrap_or_else(|| panic!("{what}: no uniform"));
    let binding = uniform.binding.as_ref().unwrap();
    assert_eq!((binding.group, binding.binding), (0, 0), "{what}: the uniform's binding");
    let ty = &module.types[uniform.ty];
    assert_eq!(ty.name.as_deref(), Some("Params"), "{what}: the uniform's type");
    let TypeInner::Struct { members, span } = &ty.inner else { panic!("{what}: Params is not a struct") };

    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let fields = K::Params::FIELDS;
    assert_eq!(size_of::<K::Params>(), *span as usize, "{what}: size of Params");
    let names = |v: Vec<&str>| v.join(", ");
    assert_eq!(
        names(fields.iter().map(|f| f.name).collect()),
        names(members.iter().map(|m| m.name.as_deref().unwrap_or("?")).collect()),
        "{what}: fields"
    );
    for (f, m) in fields.iter().zip(members) {
        assert_eq!(f.offset, m.offset as usize, "{what}: offset of {}", f.name);
        assert_eq!(f.size, layouter[m.ty].size as usize, "{what}: size of {}", f.name);
        let wgsl = match module.types[m.ty].inner {
            TypeInner::Scalar(Scalar { kind: ScalarKind::Uint, width: 4 }) => "u32",
            TypeInner::Scalar(Scalar { kind: ScalarKind::Sint, width: 4 }) => "i32",
            TypeInner::Scalar(Scalar { kind: ScalarKind::Float, width: 4 }) => "f32",
            ref other => panic!("{what}: field {} is {other:?}", f.name),
        };
        assert_eq!(f.ty, wgsl, "{what}: type of {}", f.name);
    }

    let words = k.params();
    assert_eq!(words.len() * 4, *span as usize, "{what}: words of params()");
    assert_eq!(words, bytemuck::cast_slice::<u8, u32>(bytemuck::bytes_of(&k.uniform())), "{what}: params() is the struct");
}

#[test]
fn activation_params_match_the_shader() {
    for act in [Activation::GeluTanh, Activation::Relu] {
        check(ActivationKernel { act, n: 5 });
    }
}

#[test]
fn add_params_match_the_shader() {
    check(AddKernel { n: 5 });
}

#[test]
fn fill_params_match_the_shader() {
    check(FillKernel { words: 5, value: 0x7fc0_0000 });
}

#[test]
fn assemble_params_match_the_shader() {
    check(AssembleKernel { rows: 3, parts: [(4, 1, 2), (5, 0, 3), (6, 2, 4)] });
}

#[test]
fn layer_norm_params_match_the_shader() {
    for style in STYLES {
        check(LayerNormKernel { rows: 3, cols: 7, eps: 1e-5, style });
    }
}

#[test]
fn linear_params_match_the_shader() {
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0] {
        for style in STYLES {
            // Matrix–vector and tiled entry points.
            for m in [1, 65] {
                check(LinearKernel { dtype, m, k: 64, n_total: 40, row0: 8, rows: 32, style });
            }
        }
    }
}

#[test]
fn output_params_match_the_shader() {
    for transform in [Transform::LogFoldChange, Transform::Counts, Transform::Counterfactual] {
        check(OutputKernel { transform, rows: 3, genes: 7 });
    }
}

#[test]
fn prior_embed_params_match_the_shader() {
    check(PriorEmbedKernel { rows: 3, hidden: 8, fields: 2, numeric_row0: 10, numeric: 1 });
}

#[test]
fn reparameterize_params_match_the_shader() {
    let streams = Streams { latent: 6, split: 4, lo: 0, hi: 2 };
    let noise = Noise { seed: 0x1234_5678_9abc_def0, first_sample: 3 };
    for draw in [Draw::Mean, Draw::Sample(noise), Draw::Words { seed: 7, blocks: 9 }] {
        check(ReparameterizeKernel { rows: 3, samples: 2, streams, draw });
    }
}
