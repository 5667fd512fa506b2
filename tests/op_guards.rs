//! Both backends refuse ill-shaped op arguments with the op's own message (the guards in
//! `refcast::ops`), before any kernel runs.

mod common;

use refcast::backend::{Backend, CpuBackend};
use refcast::ops::Activation;
use refcast::ops::reparameterize::Streams;
use refcast::quant::{DType, Matrix};

/// Asserts that `result` is the request error `message`.
fn refused<T>(result: refcast::Result<T>, message: &str) {
    match result {
        Ok(_) => panic!("accepted; expected: {message}"),
        Err(e) => assert_eq!(e.to_string(), format!("invalid request: {message}")),
    }
}

fn refuses_bad_shapes<B: Backend>(be: &mut B) {
    let t = |be: &mut B, rows: usize, cols: usize| be.tensor(&vec![0.5; rows * cols], rows, cols).unwrap();
    let x = t(be, 2, 4);

    let w = Matrix::encode(3, 4, &[0.25; 12], DType::F32);
    refused(be.linear_weights(&w, &[0.0; 2]), "bias of 2 for 3 outputs");
    let lin = be.linear_weights(&w, &[0.0; 3]).unwrap();
    let wide = t(be, 2, 5);
    refused(be.linear(&wide, &lin), "linear: input has 5 columns, weight expects 4");
    be.linear(&x, &lin).unwrap();

    let (four, five, two, column) = (t(be, 1, 4), t(be, 1, 5), t(be, 2, 1), t(be, 4, 1));
    refused(be.layer_norm(&x, &five, &four, 1e-5), "layer norm weight of 5 values for 4 columns");
    refused(be.layer_norm(&x, &four, &two, 1e-5), "layer norm bias of 2 values for 4 columns");
    be.layer_norm(&x, &four, &column, 1e-5).unwrap();

    let (transposed, same) = (t(be, 4, 2), t(be, 2, 4));
    refused(be.add(&x, &transposed), "add: shapes [2, 4] and [4, 2] differ");
    be.add(&x, &same).unwrap();

    // A table of 5 one-hot rows and 2 numeric rows of width 4.
    let (table, bias, narrow) = (t(be, 7, 4), t(be, 1, 4), t(be, 1, 3));
    refused(be.prior_embed(&table, 8, &bias, &[0, 1], &[], 2), "prior table of 7 rows has no numeric row 8");
    refused(be.prior_embed(&table, 5, &narrow, &[0, 1], &[0.0; 4], 2), "prior bias of 3 values for width 4");
    refused(be.prior_embed(&table, 5, &bias, &[0, 1], &[0.0; 3], 2), "prior numeric inputs: 3 values for 2 rows × 2 fields");
    refused(be.prior_embed(&table, 5, &bias, &[0, 1, 2], &[0.0; 4], 2), "prior index of 3 values for 2 rows");
    refused(be.prior_embed(&table, 5, &bias, &[0, 5], &[0.0; 4], 2), "prior index 5 outside the 5 rows");
    be.prior_embed(&table, 5, &bias, &[0, 4], &[0.0; 4], 2).unwrap();

    let head = t(be, 2, 6);
    refused(be.reparameterize(&head, Streams::single(2, 0), None, 1), "reparameterize: head has 6 columns for latent 2");
    be.reparameterize(&head, Streams::single(3, 0), None, 1).unwrap();

    let (a, b) = (t(be, 3, 4), t(be, 2, 6));
    refused(be.assemble([(&a, 0, 2), (&b, 1, 2), (&a, 2, 2)], &[0, 0, 0, 1]), "assemble index of 4 values is not [rows, 3]");
    refused(be.assemble([(&a, 0, 2), (&b, 5, 2), (&a, 2, 2)], &[0, 0, 0]), "assemble part 1: columns 5..7 of 6");
    refused(be.assemble([(&a, 0, 2), (&b, 1, 2), (&a, 2, 2)], &[0, 1, 0, 2, 2, 3]), "assemble part 1: row 2 of 2");
    refused(be.assemble([(&a, 0, 2), (&b, 1, 2), (&a, 2, 2)], &[0, 1, 0, 2, 1, 3]), "assemble part 2: row 3 of 3");
    be.assemble([(&a, 0, 2), (&b, 1, 2), (&a, 2, 2)], &[0, 1, 0, 2, 1, 2]).unwrap();

    // Predictions [2, 4] against three reference rows.
    let (pred, reference, more_genes) = (x, t(be, 3, 4), t(be, 3, 5));
    refused(
        be.log_fold_change(&pred, &reference, &[0]),
        "log fold change: [2, 4] prediction, [3, 4] reference, 1 indices",
    );
    refused(
        be.log_fold_change(&pred, &more_genes, &[0, 1]),
        "log fold change: [2, 4] prediction, [3, 5] reference, 2 indices",
    );
    refused(be.log_fold_change(&pred, &reference, &[0, 3]), "reference index 3 outside the 3 rows");
    be.log_fold_change(&pred, &reference, &[0, 2]).unwrap();

    refused(be.counts(&pred, &[1e4; 3], &[0, 1, 2]), "counts: 3 indices for 2 rows");
    refused(be.counts(&pred, &[1e4; 3], &[3, 0]), "library size index 3 outside the 3 rows");
    be.counts(&pred, &[1e4; 3], &[2, 0]).unwrap();

    refused(
        be.counterfactual(&pred, &reference, None, &[0, 1, 2]),
        "counterfactual: [2, 4] prediction, [3, 4] reference, 3 indices",
    );
    refused(be.counterfactual(&pred, &reference, None, &[3, 1]), "counterfactual: reference index 3 outside the 3 rows");
    refused(be.counterfactual(&pred, &reference, None, &[0, 2]), "counterfactual: control index 2 outside the 2 rows");
    be.counterfactual(&pred, &reference, None, &[2, 1]).unwrap();
    let threshold = be.tensor(&[0.5; 4], 1, 4).unwrap();
    be.counterfactual(&pred, &reference, Some(&threshold), &[2, 1]).unwrap();
    refused(be.counterfactual(&pred, &reference, Some(&more_genes), &[2, 1]), "counterfactual: [3, 5] thresholds for 4 genes");
    let short = be.tensor(&[0.5; 3], 1, 3).unwrap();
    refused(be.counterfactual(&pred, &reference, Some(&short), &[2, 1]), "counterfactual: [1, 3] thresholds for 4 genes");

    // Activations take any shape.
    be.activation(&reference, Activation::Relu).unwrap();
}

#[test]
fn cpu_backend_refuses_bad_shapes() {
    refuses_bad_shapes(&mut CpuBackend::new());
}

#[test]
fn gpu_backend_refuses_bad_shapes_with_the_same_messages() {
    if let Some(mut g) = common::gpu_or_skip() {
        refuses_bad_shapes(&mut g);
    }
}
