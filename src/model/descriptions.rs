//! DFER-CLIP's class texts: a description of what the face does for each label, never the
//! label's name (Zhao & Patras). Built-in files for DFEW, FERV39k and MAFW live in
//! `data-manifests/descriptions/`; `model.descriptions` names a file of one's own: a TOML table
//! of `label = "description"` covering every label, or a Python file in the layout of the
//! authors' published lists (their `models/Text.py`: `class_names_N` and `class_descriptor_N`
//! for N classes, matched to the labels by emotion word, not by position).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::error::UsageError;

/// The built-in description files, by dataset.
const BUILT_IN: &[(&str, &str)] = &[
    ("dfew", include_str!("../../data-manifests/descriptions/dfew.toml")),
    ("ferv39k", include_str!("../../data-manifests/descriptions/ferv39k.toml")),
    ("mafw", include_str!("../../data-manifests/descriptions/mafw.toml")),
];

fn parse(text: &str, origin: &str) -> Result<BTreeMap<String, String>> {
    let table: BTreeMap<String, String> = toml::from_str(text)
        .map_err(|e| UsageError::new(format!("{origin}: not a table of label = \"description\": {}", e.message())))?;
    if let Some((label, _)) = table.iter().find(|(_, d)| d.trim().is_empty()) {
        return Err(UsageError::new(format!("{origin}: the description of {label:?} is empty")).into());
    }
    Ok(table)
}

/// `table`'s description of each of `labels`, in order, or the labels it lacks.
fn pick(table: &BTreeMap<String, String>, labels: &[String]) -> std::result::Result<Vec<String>, Vec<String>> {
    let missing: Vec<String> = labels.iter().filter(|l| !table.contains_key(*l)).cloned().collect();
    if missing.is_empty() {
        Ok(labels.iter().map(|l| table[l].clone()).collect())
    } else {
        Err(missing)
    }
}

/// The description of each of `labels`, in label order: from `file`, which must describe every
/// label and nothing else, or (no file) from the first built-in file that describes every label.
pub(crate) fn class_descriptions(file: Option<&Path>, labels: &[String]) -> Result<Vec<String>> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UsageError::new(format!("{}: cannot read class descriptions: {e}", path.display())))?;
            let origin = path.display().to_string();
            let table = match path.extension().is_some_and(|x| x == "py") {
                true => authors_layout(&text, &origin, labels)?,
                false => parse(&text, &origin)?,
            };
            let extra: Vec<&String> = table.keys().filter(|k| !labels.contains(k)).collect();
            if !extra.is_empty() {
                return Err(UsageError::new(format!(
                    "{origin}: describes {extra:?}, which are not labels of these shards ({labels:?})"
                ))
                .into());
            }
            pick(&table, labels)
                .map_err(|missing| UsageError::new(format!("{origin}: no description for {missing:?}")).into())
        }
        None => {
            for (name, text) in BUILT_IN {
                if let Ok(found) = pick(&parse(text, name)?, labels) {
                    return Ok(found);
                }
            }
            Err(UsageError::new(format!(
                "no built-in class descriptions cover the labels {labels:?} (DFEW, FERV39k and MAFW have theirs): \
                 set model.descriptions to a TOML file of label = \"description\""
            ))
            .into())
        }
    }
}

/// One emotion whatever the word form: `Happy`, `happiness.` and `happiness` are one key.
fn emotion_key(word: &str) -> String {
    let w = word.trim().trim_end_matches('.').to_lowercase();
    let key = match w.as_str() {
        "happy" => "happiness",
        "sad" => "sadness",
        "angry" => "anger",
        "surprised" => "surprise",
        "disgusted" => "disgust",
        "fearful" | "afraid" => "fear",
        "anxious" => "anxiety",
        "helpless" => "helplessness",
        "disappointed" => "disappointment",
        "contemptuous" => "contempt",
        other => other,
    };
    key.to_string()
}

/// The string literals of the Python list assigned to `name` (`name = [ 'a', "b", ... ]`).
fn python_list(text: &str, name: &str) -> Option<Vec<String>> {
    let mut at = 0;
    let mut found = None;
    for line in text.split_inclusive('\n') {
        if line.trim_start().strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            found = Some(at);
            break;
        }
        at += line.len();
    }
    let at = found?;
    let body = &text[at..];
    let open = body.find('[')?;
    let mut items = Vec::new();
    let mut chars = body[open + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            ']' => return Some(items),
            '\'' | '"' => {
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '\\' => item.push(chars.next()?),
                        q if q == c => break,
                        other => item.push(other),
                    }
                }
                items.push(item);
            }
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            _ => {}
        }
    }
    None
}

/// `label → description` from a file in the authors' `models/Text.py` layout: their lists for
/// `labels.len()` classes, each name matched to one of `labels` by emotion word.
fn authors_layout(text: &str, origin: &str, labels: &[String]) -> Result<BTreeMap<String, String>> {
    let n = labels.len();
    let list = |name: String| {
        python_list(text, &name).ok_or_else(|| {
            UsageError::new(format!(
                "{origin}: no list {name} (the authors' Text.py layout: class_names_{n} and class_descriptor_{n} \
                 for these {n} labels)"
            ))
        })
    };
    let (names, descriptions) = (list(format!("class_names_{n}"))?, list(format!("class_descriptor_{n}"))?);
    if names.len() != n || descriptions.len() != n {
        return Err(UsageError::new(format!(
            "{origin}: class_names_{n} has {} entries and class_descriptor_{n} {}, not {n}",
            names.len(),
            descriptions.len()
        ))
        .into());
    }
    let mut table = BTreeMap::new();
    for (name, description) in names.iter().zip(descriptions) {
        let label = labels.iter().find(|l| emotion_key(l) == emotion_key(name)).ok_or_else(|| {
            UsageError::new(format!("{origin}: class name {name:?} matches none of the labels {labels:?}"))
        })?;
        if table.insert(label.clone(), description).is_some() {
            return Err(UsageError::new(format!("{origin}: two class names match the label {label:?}")).into());
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every built-in file describes each label of its dataset description, in any label order,
    /// and never names the label it describes.
    #[test]
    fn built_in_files_describe_every_dataset_label_without_naming_it() {
        for name in ["dfew", "ferv39k", "mafw"] {
            let desc = crate::dataset::DatasetDesc::load(name).unwrap();
            let texts = class_descriptions(None, &desc.labels).unwrap();
            assert_eq!(texts.len(), desc.labels.len());
            for (label, text) in desc.labels.iter().zip(&texts) {
                assert!(!text.to_lowercase().contains(&label.to_lowercase()), "{name}: {label}: {text}");
                assert!(text.split_whitespace().count() >= 8, "{name}: {label}: {text}");
            }
            let mut reversed = desc.labels.clone();
            reversed.reverse();
            let back = class_descriptions(None, &reversed).unwrap();
            assert_eq!(back.iter().rev().cloned().collect::<Vec<_>>(), texts, "{name}: follows the label order");
        }
        let e = class_descriptions(None, &strings(&["calm", "tense"])).unwrap_err();
        assert!(format!("{e:#}").contains("model.descriptions"), "{e:#}");
    }

    #[test]
    fn a_file_of_ones_own_must_describe_every_label_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        let labels = strings(&["calm", "tense"]);
        std::fs::write(&p, "tense = \"tight jaw\"\ncalm = \"soft eyes\"\n").unwrap();
        assert_eq!(class_descriptions(Some(&p), &labels).unwrap(), strings(&["soft eyes", "tight jaw"]));
        for (text, want) in [
            ("calm = \"soft eyes\"\n", "no description for [\"tense\"]"),
            ("calm = \"a\"\ntense = \"b\"\nangry = \"c\"\n", "describes [\"angry\"]"),
            ("calm = \" \"\ntense = \"b\"\n", "description of \"calm\" is empty"),
            ("calm = 3\n", "not a table"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = format!("{:#}", class_descriptions(Some(&p), &labels).unwrap_err());
            assert!(e.contains("d.toml") && e.contains(want), "{text:?}: {e}");
        }
        let e = format!("{:#}", class_descriptions(Some(&dir.path().join("none.toml")), &labels).unwrap_err());
        assert!(e.contains("none.toml") && e.contains("cannot read"), "{e}");
    }

    /// A file in the authors' layout (their list order, DFEW's, matched by emotion word to
    /// FERV39k's alphabetical labels).
    #[test]
    fn the_authors_layout_is_read_by_emotion_word() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Text.py");
        let names = ["happiness.", "sadness.", "neutral.", "anger.", "surprise.", "disgust.", "fear."];
        let quote = |v: &[&str]| v.iter().map(|s| format!("'{s}',")).collect::<Vec<_>>().join("\n");
        let descr: Vec<String> = (0..7).map(|i| format!("face {i}")).collect();
        let descr: Vec<&str> = descr.iter().map(|s| s.as_str()).collect();
        let text = format!(
            "# comment\nclass_names_7 = [\n{}\n]\nclass_descriptor_7 = [\n{}\n]\nclass_names_11 = ['x']\n",
            quote(&names),
            quote(&descr)
        );
        std::fs::write(&p, &text).unwrap();
        let ferv = crate::dataset::DatasetDesc::load("ferv39k").unwrap();
        let got = class_descriptions(Some(&p), &ferv.labels).unwrap();
        // FERV39k's labels: Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise.
        assert_eq!(got, strings(&["face 3", "face 5", "face 6", "face 0", "face 2", "face 1", "face 4"]));
        let e = format!("{:#}", class_descriptions(Some(&p), &strings(&["calm", "tense"])).unwrap_err());
        assert!(e.contains("Text.py") && e.contains("no list class_names_2"), "{e}");
        std::fs::write(&p, text.replace("'fear.'", "'boredom.'")).unwrap();
        let e = format!("{:#}", class_descriptions(Some(&p), &ferv.labels).unwrap_err());
        assert!(e.contains("\"boredom.\" matches none"), "{e}");
    }
}
