//! The shaders' tiny preprocessor: `#ifdef NAME`, `#ifndef NAME`, `#else`, `#endif` (nestable),
//! each on a line of its own. Dropped lines become empty lines so that compiler messages keep the
//! line numbers of the `.wgsl` file.

use crate::error::{Error, Result};

/// Keeps the lines of `source` whose conditions hold with `defines` set.
pub fn preprocess(name: &str, source: &str, defines: &[&str]) -> Result<String> {
    // One entry per open `#if…`: (this branch is taken, some branch of it was taken).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let mut out = String::with_capacity(source.len());
    let active = |stack: &[(bool, bool)]| stack.iter().all(|&(on, _)| on);
    for (number, line) in source.lines().enumerate() {
        let t = line.trim();
        let bad = |what: &str| Error::Gpu(format!("shaders/{name}.wgsl line {}: {what}", number + 1));
        let mut words = t.split_whitespace();
        match words.next() {
            Some(d @ ("#ifdef" | "#ifndef")) => {
                let name = words.next().ok_or_else(|| bad("a define name is missing"))?;
                let on = defines.contains(&name) == (d == "#ifdef");
                stack.push((on, on));
            }
            Some("#else") => {
                let top = stack.last_mut().ok_or_else(|| bad("#else without #ifdef"))?;
                *top = (!top.1, true);
            }
            Some("#endif") => {
                stack.pop().ok_or_else(|| bad("#endif without #ifdef"))?;
            }
            _ => {
                if active(&stack) {
                    out.push_str(line);
                }
            }
        }
        out.push('\n');
    }
    if !stack.is_empty() {
        return Err(Error::Gpu(format!("shaders/{name}.wgsl: unterminated #ifdef")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::preprocess;

    #[test]
    fn keeps_the_selected_branches_and_line_numbers() {
        let src = "a\n#ifdef X\nb\n#ifndef Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf";
        let x = preprocess("t", src, &["X"]).unwrap();
        assert_eq!(x.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), ["a", "b", "c", "f"]);
        assert_eq!(x.lines().count(), src.lines().count());
        let xy = preprocess("t", src, &["X", "Y"]).unwrap();
        assert_eq!(xy.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), ["a", "b", "d", "f"]);
        let none = preprocess("t", src, &[]).unwrap();
        assert_eq!(none.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(), ["a", "e", "f"]);
        assert!(preprocess("t", "#ifdef X\n", &[]).is_err());
    }
}
