//! `--report FILE`: a self-contained HTML report of a prediction or a screen, for reading
//! offline. It is one file: the page's style sheet and plotting modules (`www/style.css`,
//! `www/dom.js`, `www/volcano.js`) and the report's own script (`www/report.js`) inline, the
//! results as JSON in a `<script type="application/json">`. Its Content-Security-Policy is
//! `default-src 'none'` with the hashes of its one script and one style sheet: it can load
//! nothing and send nothing. It is written like every output (`output.rs`).

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use anyhow::Result;
use refcast::request::{FOLD_CHANGE_NOTE, FOLD_CHANGE_UNITS, top_changes};
use refcast::screen::{Screen, TOP_GENES, column_legend};
use refcast::{Baseline, Familiarity, ModelConfig, Prediction, Reference};

use super::output::Output;

const STYLE: &str = include_str!("../../www/style.css");
/// The page's modules the report runs, in dependency order.
const MODULES: [&str; 3] = [include_str!("../../www/dom.js"), include_str!("../../www/volcano.js"), include_str!("../../www/report.js")];

/// Rows of a prediction drawn in a report (the first draw of each sample × perturbation); more
/// are left out with a note, the full prediction being the TSV's.
pub const MAX_REPORT_ROWS: usize = 24;
/// Perturbations in a screen report's bar chart.
const CHART_HITS: usize = 20;

/// The page's ES modules as one module script: their `import` lines dropped and `export`
/// keywords removed, so that they share one scope and import nothing.
fn inline_modules(sources: &[&str]) -> String {
    let mut out = String::new();
    for source in sources {
        for line in source.lines() {
            if line.starts_with("import ") {
                continue;
            }
            out.push_str(line.strip_prefix("export ").unwrap_or(line));
            out.push('\n');
        }
    }
    out
}

/// `'sha256-…'` of an inline script or style, as a Content-Security-Policy source.
fn csp_hash(text: &str) -> String {
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes())))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The report's HTML for `data` (see [`prediction_data`], [`screen_data`]).
pub fn render(title: &str, data: &Value) -> Result<String> {
    let script = inline_modules(&MODULES);
    // In a <script> element, "</script" or "<!--" inside the JSON would end or change it: every
    // '<' is written as its JSON escape, which JSON.parse reads back as '<'.
    let json = serde_json::to_string(data)?.replace('<', "\\u003c");
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(&script),
        csp_hash(STYLE)
    );
    let title = escape(title);
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{title}</h1><p class=\"lead\" id=\"subtitle\"></p><p class=\"hint\" id=\"units\"></p></header>\n\
         <main id=\"report\"></main>\n\
         <footer><p>Written by refcast {version}. Predictions are model estimates, not measurements. This file loads nothing from anywhere.</p></footer>\n\
         <script id=\"refcast-data\" type=\"application/json\">{json}</script>\n\
         <script type=\"module\">{script}</script>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// Writes the report to `output`.
pub fn write(output: Output, title: &str, data: &Value) -> Result<()> {
    let html = render(title, data)?;
    output.write(|w| Ok(w.write_all(html.as_bytes())?))
}

/// Four decimals: enough for a plot and a table, a third of the file.
fn round(v: f32) -> f64 {
    (f64::from(v) * 1e4).round() / 1e4
}

fn familiarity_fields(f: Option<&Familiarity>) -> (Value, bool) {
    match f {
        Some(f) => (json!(f.summary()), f.outside == Some(true)),
        None => (Value::Null, false),
    }
}

/// A prediction's report data: per sample × perturbation (first draw), the measured genes' fold
/// changes and σ for the volcano plot, and the top genes each way.
pub fn prediction_data<'a>(
    cfg: &ModelConfig,
    results: impl IntoIterator<Item = (&'a Reference, &'a Prediction)>,
    perturbations: &[&str],
    baseline: Baseline,
    mode: &str,
) -> Value {
    let mut rows = Vec::new();
    let mut omitted = 0;
    for (reference, pred) in results {
        let lfc = pred.log_fold_change.as_deref().expect("references give fold changes");
        let measured = reference.measured_genes();
        // Index of each measured gene in the report's compact arrays.
        let mut compact = vec![usize::MAX; pred.genes];
        for (i, &g) in measured.iter().enumerate() {
            compact[g] = i;
        }
        for (r, row) in pred.rows.iter().enumerate().filter(|(_, row)| row.sample == 0) {
            if rows.len() == MAX_REPORT_ROWS {
                omitted += 1;
                continue;
            }
            let values = Prediction::row(lfc, pred.genes, r);
            let predicted = Prediction::row(&pred.log_cpm, pred.genes, r);
            let (up, down) = top_changes(values, &measured, TOP_GENES);
            let genes = |list: &[(usize, f32)]| -> Vec<Value> {
                list.iter()
                    .map(|&(g, v)| {
                        json!({"index": compact[g], "gene": cfg.genes[g].symbol, "lfc": round(v), "sigma": round(pred.sigma[g]),
                               "reference": round(reference.log_cpm[g]), "predicted": round(predicted[g])})
                    })
                    .collect()
            };
            let (familiarity, outside) = familiarity_fields(pred.familiarity.first());
            rows.push(json!({
                "sample": reference.name,
                "perturbation": perturbations[row.perturbation],
                "baseline": match baseline { Baseline::Reference => "measured sample", Baseline::Control => "predicted control" },
                "familiarity": familiarity,
                "outside": outside,
                "genes": measured.iter().map(|&g| cfg.genes[g].symbol.as_str()).collect::<Vec<_>>(),
                "lfc": measured.iter().map(|&g| round(values[g])).collect::<Vec<_>>(),
                "sigma": measured.iter().map(|&g| round(pred.sigma[g])).collect::<Vec<_>>(),
                "top_up": genes(&up),
                "top_down": genes(&down),
            }));
        }
    }
    let mut subtitle = format!("Predicted with {} ({mode} profiles).", cfg.name);
    if omitted > 0 {
        subtitle += &format!(" {omitted} more sample × perturbation rows are in the prediction's TSV only (a report draws at most {MAX_REPORT_ROWS}).");
    }
    json!({"kind": "prediction", "subtitle": subtitle, "units": FOLD_CHANGE_UNITS, "note": capitalised(FOLD_CHANGE_NOTE), "rows": rows})
}

/// A screen's report data: every hit with the CLI's columns and legend, and the first
/// [`CHART_HITS`] for the bar chart.
pub fn screen_data(cfg: &ModelConfig, screen: &Screen, sample: &str) -> Value {
    let by_reversal = screen.hits.first().is_some_and(|h| h.reversal.is_some());
    let genes = |v: &[(usize, f32)]| v.iter().take(5).map(|(g, l)| format!("{}:{:+.2}", cfg.genes[*g].symbol, l)).collect::<Vec<_>>().join(", ");
    let hits: Vec<Value> = screen
        .hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({"rank": i + 1, "perturbation": h.name, "effect_size": round(h.effect_size), "reversal": h.reversal.map(round),
                   "top_up": genes(&h.top_up), "top_down": genes(&h.top_down), "measured": h.coverage.measured.as_str(),
                   "measured_context": h.coverage.context, "measured_distance": h.coverage.distance.map(round)})
        })
        .collect();
    let coverage = refcast::screen::coverage_legend().into_iter().filter(|_| refcast::Coverage::recorded(cfg)).map(|(c, m)| (c, m.to_string()));
    let legend: Vec<Value> = column_legend(by_reversal, 5).into_iter().chain(coverage).map(|(column, meaning)| json!({"column": column, "meaning": meaning})).collect();
    let (familiarity, outside) = familiarity_fields(screen.familiarity.first());
    json!({
        "kind": "screen",
        "subtitle": format!("Screened with {} ({} profiles, fold changes against the {}).", cfg.name, screen.mode, screen.baseline),
        "units": FOLD_CHANGE_UNITS,
        "note": capitalised(FOLD_CHANGE_NOTE),
        "sample": sample,
        "ranked_by": if by_reversal { "reversal" } else { "effect size" },
        "familiarity": familiarity,
        "outside": outside,
        "legend": legend,
        "chart": hits.iter().take(CHART_HITS).cloned().collect::<Vec<_>>(),
        "hits": hits,
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>() + ".").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inlined modules import nothing and export nothing: they run as one script.
    #[test]
    fn the_inlined_modules_import_nothing() {
        let script = inline_modules(&MODULES);
        assert!(!script.lines().any(|l| l.starts_with("import ") || l.starts_with("export ")), "{script}");
        for name in ["function drawVolcano", "function fmt", "function drawBars", "getElementById"] {
            assert!(script.contains(name), "{name} is missing");
        }
    }

    /// A '<' in the data cannot close the data's script element.
    #[test]
    fn data_cannot_end_its_script_element() {
        let html = render("a <b> & c", &json!({"kind": "screen", "x": "</script><script>alert(1)</script>"})).unwrap();
        assert_eq!(html.matches("</script>").count(), 2, "only the two script elements close");
        assert!(html.contains("<title>a &lt;b&gt; &amp; c</title>"));
    }

    /// The policy's hashes are those of the inline script and style as written.
    #[test]
    fn the_policy_hashes_the_inline_script_and_style() {
        let html = render("t", &json!({})).unwrap();
        let script = inline_modules(&MODULES);
        assert!(html.contains(&format!("script-src {}", csp_hash(&script))));
        assert!(html.contains(&format!("<script type=\"module\">{script}</script>")));
        assert!(html.contains(&format!("style-src {}", csp_hash(STYLE))));
        // A known SHA-256 (of the empty string), to pin the encoding: standard base64 with padding.
        assert_eq!(csp_hash(""), "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='");
    }
}
