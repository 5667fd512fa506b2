//! Writes the seed corpora of the fuzz targets to corpus/model_file and corpus/sample_table.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let sets = [("model_file", refcast_fuzz::bodies::model_seeds()), ("sample_table", refcast_fuzz::bodies::sample_seeds())];
    for (target, seeds) in sets {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds.iter().enumerate() {
            // The sample target reads its first byte as the value kind.
            let data = if target == "sample_table" { [&[i as u8][..], seed].concat() } else { seed.clone() };
            std::fs::write(dir.join(format!("seed{i}")), data)?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}
