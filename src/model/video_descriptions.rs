//! FineCLIPER's description stream (`model.video_descriptions`): one text per clip describing
//! what the face does, produced elsewhere (the paper prompts a multimodal language model on the
//! video) and read here from JSON Lines, one object per clip:
//! `{"clip": "<clip id as in the manifest>", "description": "<text>"}`. Each description is
//! tokenized once, lower-cased, and truncated to the text tower's context with its end token
//! kept last (as CLIP's `tokenize(truncate=True)`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use tokenizers::Tokenizer;

use super::tokenizer::EOT;
use crate::error::UsageError;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    clip: String,
    description: String,
}

/// Reads a descriptions file: clip id → description, refusing (naming the file and line) a
/// line that is not such an object, an empty description, and a clip described twice.
pub(crate) fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError::new(format!("{}: cannot read clip descriptions: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{} line {}", path.display(), i + 1);
        let l: Line = serde_json::from_str(line)
            .map_err(|e| UsageError::new(format!("{at}: not {{\"clip\": \"…\", \"description\": \"…\"}}: {e}")))?;
        if l.description.trim().is_empty() {
            return Err(UsageError::new(format!("{at}: the description of clip {:?} is empty", l.clip)).into());
        }
        if out.insert(l.clip.clone(), l.description).is_some() {
            return Err(UsageError::new(format!("{at}: clip {:?} is described a second time", l.clip)).into());
        }
    }
    if out.is_empty() {
        return Err(UsageError::new(format!("{}: describes no clip", path.display())).into());
    }
    Ok(out)
}

/// The descriptions as token ids, by clip.
pub(crate) struct DescriptionTokens {
    row: HashMap<String, usize>,
    /// Token ids padded with 0 to the context length.
    ids: Vec<Vec<u32>>,
    /// Where each sequence's end token is.
    eot: Vec<usize>,
}

impl DescriptionTokens {
    /// Tokenizes every description of `texts` for a tower of `context` tokens.
    pub(crate) fn new(tok: &Tokenizer, texts: &BTreeMap<String, String>, context: usize) -> Result<Self> {
        let eot_id = tok.token_to_id(EOT).with_context(|| format!("tokenizer has no {EOT} token"))?;
        let (mut row, mut ids, mut eot) = (HashMap::new(), Vec::new(), Vec::new());
        for (clip, text) in texts {
            let enc = tok
                .encode(text.to_lowercase().as_str(), true)
                .map_err(|e| anyhow::anyhow!("tokenizing the description of clip {clip:?}: {e}"))?;
            let mut seq = enc.get_ids().to_vec();
            if seq.len() > context {
                seq.truncate(context);
                seq[context - 1] = eot_id;
            }
            let end = seq.iter().position(|&t| t == eot_id).context("a tokenized description without its end")?;
            seq.resize(context, 0);
            row.insert(clip.clone(), ids.len());
            ids.push(seq);
            eot.push(end);
        }
        Ok(Self { row, ids, eot })
    }

    /// The first of `clips` that has no description, and how many have none.
    pub(crate) fn missing<'a>(&self, clips: impl IntoIterator<Item = &'a str>) -> Option<(String, usize)> {
        let absent: Vec<&str> = clips.into_iter().filter(|c| !self.row.contains_key(*c)).collect();
        absent.first().map(|c| (c.to_string(), absent.len()))
    }

    /// Token ids `[B · L]` (row-major) and end positions of `clips`' descriptions.
    pub(crate) fn batch(&self, clips: &[String]) -> Result<(Vec<u32>, Vec<usize>)> {
        let mut flat = Vec::new();
        let mut eot = Vec::with_capacity(clips.len());
        for c in clips {
            let &r = self.row.get(c).with_context(|| format!("clip {c:?} has no description"))?;
            flat.extend_from_slice(&self.ids[r]);
            eot.push(self.eot[r]);
        }
        Ok((flat, eot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::prompts::PLACEHOLDER;
    use crate::model::tokenizer;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("descriptions.jsonl");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_one_description_per_clip_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let good = "{\"clip\": \"00001\", \"description\": \"The corners of the mouth rise.\"}\n\n\
                    {\"clip\": \"00002\", \"description\": \"Brows drawn together, \\\"tight\\\" lips.\"}\n";
        let m = read(&write(dir.path(), good)).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["00002"], "Brows drawn together, \"tight\" lips.");
        for (text, says) in [
            ("{\"clip\": \"1\"}\n", "line 1: not"),
            (
                "{\"clip\": \"1\", \"description\": \"a\"}\n{\"clip\": \"1\", \"description\": \"b\"}\n",
                "line 2: clip \"1\" is described a second time",
            ),
            ("{\"clip\": \"7\", \"description\": \"  \"}\n", "the description of clip \"7\" is empty"),
            ("\n", "describes no clip"),
        ] {
            let e = format!("{:#}", read(&write(dir.path(), text)).unwrap_err());
            assert!(e.contains("descriptions.jsonl") && e.contains(says), "{e}");
        }
    }

    /// A description longer than the context is cut to it with the end token last; a short one
    /// is padded, its end where the text ends; a clip without one is named.
    #[test]
    fn long_descriptions_are_truncated_with_their_end_token_last() {
        let texts: BTreeMap<String, String> =
            [("a".to_string(), "a wide smile".to_string()), ("b".to_string(), ["brows low"; 20].join(" and "))].into();
        let all: Vec<String> = texts.values().cloned().collect();
        let tok = tokenizer::words(&all, PLACEHOLDER).unwrap();
        let eot_id = tok.token_to_id(EOT).unwrap();
        let d = DescriptionTokens::new(&tok, &texts, 16).unwrap();
        let (ids, eot) = d.batch(&["a".into(), "b".into()]).unwrap();
        assert_eq!(ids.len(), 32);
        assert_eq!(eot, [4, 15], "start + 3 words + end; cut to 16 with the end last");
        assert_eq!((ids[4], ids[15], ids[31]), (eot_id, 0, eot_id));
        assert_eq!(d.missing(["a", "x", "b", "y"]), Some(("x".to_string(), 2)));
        assert_eq!(d.missing(["b"]), None);
        assert!(format!("{:#}", d.batch(&["z".into()]).unwrap_err()).contains("\"z\""));
    }
}
