//! Ships the WGSL kernels without their comments and indentation: the shaders are embedded in the
//! library (and so in the wasm module, which has a size budget), and a third of their text is
//! explanation for readers. Each line keeps its number, so shader compiler errors still point at
//! the right line of `shaders/*.wgsl`.

use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=shaders");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shaders");
    fs::create_dir_all(&out).expect("create OUT_DIR/shaders");
    for entry in fs::read_dir("shaders").expect("read shaders/") {
        let path = entry.expect("list shaders/").path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            fs::write(out.join(path.file_name().unwrap()), strip(&source)).expect("write shader");
        }
    }
}

/// Drops `//` comments (WGSL has no string literals, so `//` always starts one) and the
/// whitespace around each line.
fn strip(source: &str) -> String {
    source
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code).trim())
        .collect::<Vec<_>>()
        .join("\n")
}
