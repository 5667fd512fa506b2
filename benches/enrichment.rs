//! Gene-set scoring speed on the shipped gene sets (4,900 sets, 405k memberships) and model
//! genes (15,360): median time of scoring every set (ULM t, p-values, FDR), and of that plus
//! every set's leading genes, for random fold changes over 90 % of the genes.
//!
//!     cargo bench --bench enrichment
//!     cargo bench --bench enrichment -- --budget-ms 3000

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use refcast::enrichment::GeneSets;
use refcast::format::ModelFile;

fn budget() -> Duration {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--budget-ms" {
            return Duration::from_millis(it.next().and_then(|v| v.parse().ok()).expect("--budget-ms N"));
        }
    }
    Duration::from_millis(2000)
}

/// Median seconds per call of `f` over as many calls as fit in `budget` (at least 5).
fn median(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 5 || start.elapsed() < budget {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let root = env!("CARGO_MANIFEST_DIR");
    let model = ModelFile::from_bytes(&std::fs::read(format!("{root}/models/refcast-q8_0.safetensors")).unwrap()).unwrap();
    let sets = GeneSets::from_bytes(&std::fs::read(format!("{root}/models/refcast-genesets.safetensors")).unwrap(), &model.config).unwrap();
    let g = model.config.genes.len();
    let members: usize = (0..sets.sets().len()).map(|s| sets.members(s).0.len()).sum();
    let mut rng = StdRng::seed_from_u64(7);
    let values: Vec<f32> = (0..g).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let universe: Vec<bool> = (0..g).map(|_| rng.random_bool(0.9)).collect();
    let budget = budget();
    let t_score = median(budget, || {
        std::hint::black_box(sets.score(&values, Some(&universe)).unwrap());
    });
    let t_leading = median(budget, || {
        let e = sets.score(&values, Some(&universe)).unwrap();
        std::hint::black_box(sets.results(&e.scores, &values, Some(&universe)));
    });
    let t_one = median(budget, || {
        std::hint::black_box(sets.score_one(0, &values, Some(&universe)).unwrap());
    });
    println!("gene sets: {} sets, {members} memberships; {g} genes, {} in the universe", sets.sets().len(), universe.iter().filter(|&&u| u).count());
    println!("score every set (t, p, FDR)            {:8.3} ms", t_score * 1e3);
    println!("score every set + leading genes        {:8.3} ms", t_leading * 1e3);
    println!("score one set (screen --rank-by)       {:8.3} ms", t_one * 1e3);
}
