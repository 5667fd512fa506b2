//! What a prior network accepts: each categorical field's vocabulary and each numeric field's
//! training range, and how metadata encodes against them (one-hot table rows, transformed
//! numbers). Unknown values are errors that suggest the nearest known names. Model files are
//! checked with the same code that encodes a request, so a file cannot list an entry its own
//! priors would refuse.

use super::{Group, Metadata, NumericField, PriorSpec, Value};
use crate::error::{Error, Result};

/// Prior-network inputs for a batch of rows of one group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriorInputs {
    /// `[rows, categorical fields]` rows of the embedding table.
    pub index: Vec<u32>,
    /// `[rows, numeric fields]` transformed values.
    pub numeric: Vec<f32>,
    pub rows: usize,
}

/// Encodes one row per metadata map for the prior of `group`.
pub fn encode(spec: &PriorSpec, group: Group, rows: &[&Metadata]) -> Result<PriorInputs> {
    let mut out = PriorInputs { rows: rows.len(), ..Default::default() };
    for md in rows {
        let mut offset = 0u32;
        for field in &spec.categorical {
            let idx = match md.get(&field.name) {
                None => 0,
                // the exact spelling first: two studies may spell one compound differently
                // ("Dexamethasone", "dexamethasone"), and they are distinct entries
                Some(Value::Text(v)) => (field.values.iter().position(|known| known == v.trim()))
                    .or_else(|| field.values.iter().position(|known| known.eq_ignore_ascii_case(v.trim())))
                    .ok_or_else(|| {
                        Error::Metadata(format!(
                            "{} '{v}' is not known to the model{}; known values: {}",
                            field.name,
                            suggest(v, field.values.iter().map(String::as_str)),
                            listing(&field.values)
                        ))
                    })?,
                Some(Value::Number(n)) => {
                    return Err(Error::Metadata(format!("{} ({} field) must be a name, got the number {n}", field.name, group.name())));
                }
            };
            out.index.push(offset + idx as u32);
            offset += field.values.len() as u32;
        }
        for field in &spec.numeric {
            let v = match md.get(&field.name) {
                None => 0.0,
                Some(Value::Number(n)) => {
                    if !n.is_finite() || *n < field.min || *n > field.max {
                        return Err(Error::Metadata(outside_training_range(field, *n)));
                    }
                    field.transform(*n)
                }
                Some(Value::Text(t)) => {
                    let n: f64 = t.trim().parse().map_err(|_| Error::Metadata(format!("{} must be a number, got '{t}'", field.name)))?;
                    let mut md = Metadata::new();
                    md.insert(field.name.clone(), Value::Number(n));
                    let spec = PriorSpec { categorical: vec![], numeric: vec![field.clone()] };
                    encode(&spec, group, &[&md])?.numeric[0]
                }
            };
            out.numeric.push(v);
        }
    }
    Ok(out)
}

pub(crate) fn outside_training_range(field: &NumericField, v: f64) -> String {
    let unit = field.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
    format!("{} = {v} is outside the range the model was trained on, [{}, {}]{unit}", field.name, field.min, field.max)
}

/// At most this many values are listed in an error; the rest are counted.
const LISTED_VALUES: usize = 30;

/// "a, b, c" — or the first values and how many more there are, for a long vocabulary.
pub(crate) fn listing(values: &[String]) -> String {
    if values.len() <= LISTED_VALUES {
        return values.join(", ");
    }
    format!("{}, … and {} more (`refcast info` lists them all)", values[..LISTED_VALUES].join(", "), values.len() - LISTED_VALUES)
}

/// " (did you mean 'X'?)" for the closest name by edit distance, when one is close; between
/// names equally close whatever the case, the one closer to the spelling as written.
pub fn suggest<'a>(wanted: &str, known: impl Iterator<Item = &'a str>) -> String {
    let w = wanted.to_lowercase();
    known
        .map(|k| (edit_distance(&w, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (k.chars().count().max(w.chars().count()) / 2).max(2))
        .min_by_key(|(d, k)| (*d, edit_distance(wanted, k)))
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["IFN-beta", "dexamethasone", "none"];
        assert_eq!(suggest("IFN-b", known.iter().copied()), " (did you mean 'IFN-beta'?)");
        assert_eq!(suggest("dexamethazone", known.iter().copied()), " (did you mean 'dexamethasone'?)");
        assert_eq!(suggest("completely different", known.iter().copied()), "");
        // equally close in any case: the spelling as written decides
        let both = ["Dexamethasone", "dexamethasone"];
        assert_eq!(suggest("dexamethazone", both.iter().copied()), " (did you mean 'dexamethasone'?)");
        assert_eq!(suggest("Dexamethazone", both.iter().copied()), " (did you mean 'Dexamethasone'?)");
    }

    #[test]
    fn long_vocabularies_are_listed_in_part() {
        let short: Vec<String> = ["unknown", "B", "T"].iter().map(|v| v.to_string()).collect();
        assert_eq!(listing(&short), "unknown, B, T");
        let long: Vec<String> = (0..250).map(|i| format!("c{i}")).collect();
        let text = listing(&long);
        assert!(text.starts_with("c0, c1, ") && text.contains("c29, … and 220 more"), "{text}");
        assert!(!text.contains("c30"), "{text}");
    }

    #[test]
    fn an_exact_spelling_wins_over_another_case() {
        let field = |values: &[&str]| super::super::CategoricalField {
            name: "perturbation".into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let spec = PriorSpec { categorical: vec![field(&["unknown", "Dexamethasone", "dexamethasone", "IFN-beta"])], numeric: vec![] };
        let row = |v: &str| Metadata::from([("perturbation".to_string(), Value::Text(v.into()))]);
        let index = |v: &str| encode(&spec, Group::Perturbation, &[&row(v)]).unwrap().index[0];
        assert_eq!(index("dexamethasone"), 2);
        assert_eq!(index("Dexamethasone"), 1);
        assert_eq!(index("ifn-BETA"), 3, "another case still finds a value spelt once");
        assert!(encode(&spec, Group::Perturbation, &[&row("cortisol")]).is_err());
    }
}
