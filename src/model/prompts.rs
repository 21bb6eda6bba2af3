//! Learnable prompts (CoOp, Zhou et al. 2022): `n_ctx` context vectors shared by all classes
//! replace the placeholder words of "x x … x <class name>." before the CLIP text tower.
//! Tokenisation goes through the `tokenizers` crate: the model's own `tokenizer.json` for real
//! weights, or a word-level vocabulary of the label names for tiny random-weight configs.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use candle_core::Tensor;
use tokenizers::Tokenizer;

use super::clip::TextTower;
use super::params::{Group, ParamStore};

pub const SOT: &str = "<|startoftext|>";
pub const EOT: &str = "<|endoftext|>";
const PLACEHOLDER: &str = "x";

/// Loads `tokenizer.json`, naming the file on failure.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))
}

/// A word-level tokenizer over the placeholder, "." and the words of `labels` (lower-cased), with
/// CLIP's start / end tokens. Only meaningful for random-weight configs.
pub fn word_tokenizer(labels: &[String]) -> Result<Tokenizer> {
    let mut vocab: Vec<String> = vec!["<unk>".into(), SOT.into(), EOT.into(), PLACEHOLDER.into(), ".".into()];
    for label in labels {
        for w in label.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            if !vocab.iter().any(|v| v == w) {
                vocab.push(w.to_string());
            }
        }
    }
    let vocab_map: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, w)| (w.clone(), serde_json::json!(i))).collect();
    let special = |name: &str, id: usize| serde_json::json!({ "id": name, "ids": [id], "tokens": [name] });
    let template = |seq: &str| serde_json::json!([{ "SpecialToken": { "id": SOT, "type_id": 0 } }, { "Sequence": { "id": seq, "type_id": 0 } }, { "SpecialToken": { "id": EOT, "type_id": 0 } }]);
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": { "type": "Lowercase" },
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": { "type": "TemplateProcessing", "single": template("A"), "pair": template("B"),
            "special_tokens": { SOT: special(SOT, 1), EOT: special(EOT, 2) } },
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab_map, "unk_token": "<unk>" }
    });
    Tokenizer::from_str(&json.to_string()).map_err(|e| anyhow::anyhow!("building the word tokenizer: {e}"))
}

/// Token ids of each class prompt, padded to the context length, and where the context vectors go.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTokens {
    pub ids: Vec<Vec<u32>>,
    pub eot: Vec<usize>,
    pub n_ctx: usize,
}

pub fn tokenize_prompts(tok: &Tokenizer, labels: &[String], n_ctx: usize, context: usize) -> Result<PromptTokens> {
    let placeholder = tok.token_to_id(PLACEHOLDER).context("tokenizer has no token for the placeholder \"x\"")?;
    let eot_id = tok.token_to_id(EOT).with_context(|| format!("tokenizer has no {EOT} token"))?;
    let mut ids = Vec::new();
    let mut eot = Vec::new();
    for label in labels {
        let text = format!("{} {}.", vec![PLACEHOLDER; n_ctx].join(" "), label.to_lowercase());
        let enc = tok.encode(text.as_str(), true).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        let mut seq = enc.get_ids().to_vec();
        ensure!(
            seq.len() > n_ctx + 1 && seq[1..=n_ctx].iter().all(|&t| t == placeholder),
            "prompt {text:?} does not tokenize as start token + {n_ctx} placeholders + class name ({seq:?})"
        );
        let Some(end) = seq.iter().position(|&t| t == eot_id) else { bail!("prompt {text:?} has no {EOT} token") };
        ensure!(seq.len() <= context, "prompt {text:?} has {} tokens, context length is {context}", seq.len());
        if unknown(tok, &seq) {
            bail!("label {label:?} has words the tokenizer does not know");
        }
        seq.resize(context, 0);
        ids.push(seq);
        eot.push(end);
    }
    Ok(PromptTokens { ids, eot, n_ctx })
}

fn unknown(tok: &Tokenizer, seq: &[u32]) -> bool {
    tok.token_to_id("<unk>").is_some_and(|u| seq.contains(&u))
}

/// The learnable context (`prompt_learner.ctx [n_ctx, width]`, N(0, 0.02²) as in CoOp).
pub struct PromptLearner {
    ctx: Tensor,
    tokens: PromptTokens,
    ids: Tensor,
}

impl PromptLearner {
    pub fn new(store: &mut ParamStore, tokens: PromptTokens, width: usize) -> Result<Self> {
        let ctx = store.scope("prompt_learner", Group::Prompts).normal("ctx", &[tokens.n_ctx, width], 0.02)?;
        let flat: Vec<u32> = tokens.ids.concat();
        let ids = Tensor::from_vec(flat, (tokens.ids.len(), tokens.ids[0].len()), store.device())?;
        Ok(Self { ctx, tokens, ids })
    }

    pub fn classes(&self) -> usize {
        self.tokens.ids.len()
    }

    /// Class text features `[K, embed_dim]` through the text tower.
    pub fn class_features(&self, text: &TextTower) -> Result<Tensor> {
        let emb = text.embed_tokens(&self.ids)?;
        let (k, l, w) = emb.dims3()?;
        let n = self.tokens.n_ctx;
        let ctx = self.ctx.unsqueeze(0)?.broadcast_as((k, n, w))?;
        let x = Tensor::cat(&[&emb.narrow(1, 0, 1)?, &ctx, &emb.narrow(1, 1 + n, l - 1 - n)?], 1)?;
        text.forward_embeddings(&x, &self.tokens.eot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_tokenizer_round_trips_through_a_file_and_places_the_context() {
        let labels: Vec<String> = ["Happy", "Sad", "Neutral"].iter().map(|s| s.to_string()).collect();
        let tok = word_tokenizer(&labels).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let tok = load_tokenizer(&path).unwrap();
        let p = tokenize_prompts(&tok, &labels, 4, 12).unwrap();
        assert_eq!(p.ids[0][..8], [1, 3, 3, 3, 3, 5, 4, 2]);
        assert_eq!(p.eot, vec![7, 7, 7]);
        assert!(p.ids.iter().all(|s| s.len() == 12));
        let e = tokenize_prompts(&tok, &["Fear".to_string()], 4, 12).unwrap_err();
        assert!(format!("{e:#}").contains("does not know"), "{e:#}");
        let e = tokenize_prompts(&tok, &labels, 10, 12).unwrap_err();
        assert!(format!("{e:#}").contains("context length"), "{e:#}");
        let e = load_tokenizer(&dir.path().join("missing.json")).unwrap_err();
        assert!(format!("{e:#}").contains("missing.json"), "{e:#}");
    }
}
