//! Learnable prompts (CoOp, Zhou et al. 2022): `n_ctx` context vectors replace the placeholder
//! words of "x x … x <class text>." before the CLIP text tower. OUS's class text is the class
//! name and its context is shared by all classes (CoOp); DFER-CLIP's is a description of the
//! face's behaviour with a context of its own per class (Zhao & Patras).
//! The tokenizer comes from `tokenizer.rs`; the placeholder's id is taken by encoding it, so a
//! BPE that spells it `x</w>` works as well as a word vocabulary.

use anyhow::{bail, ensure, Context, Result};
use candle_core::Tensor;
use tokenizers::Tokenizer;

use super::clip::TextTower;
use super::params::{Group, ParamStore};
use super::tokenizer::EOT;
use crate::error::UsageError;

/// The word that marks where the context vectors go ("x x … x <class name>.", as in CoOp).
pub(crate) const PLACEHOLDER: &str = "x";

/// Token ids of each class prompt, padded to the context length, and where the context vectors go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptTokens {
    pub ids: Vec<Vec<u32>>,
    pub eot: Vec<usize>,
    pub n_ctx: usize,
}

/// Token ids of "x x … x <text>." for each class text (lower-cased).
pub(crate) fn tokenize_prompts(
    tok: &Tokenizer,
    texts: &[String],
    n_ctx: usize,
    context: usize,
) -> Result<PromptTokens> {
    let placeholder = placeholder_id(tok)?;
    let eot_id = tok.token_to_id(EOT).with_context(|| format!("tokenizer has no {EOT} token"))?;
    let mut ids = Vec::new();
    let mut eot = Vec::new();
    for class_text in texts {
        // The text ends with one full stop: the authors' descriptions bring their own.
        let stop = if class_text.ends_with('.') { "" } else { "." };
        let text = format!("{} {}{stop}", vec![PLACEHOLDER; n_ctx].join(" "), class_text.to_lowercase());
        let enc = tok.encode(text.as_str(), true).map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
        let mut seq = enc.get_ids().to_vec();
        ensure!(
            seq.len() > n_ctx + 1 && seq[1..=n_ctx].iter().all(|&t| t == placeholder),
            "prompt {text:?} does not tokenize as start token + {n_ctx} placeholders + class text ({seq:?})"
        );
        let Some(end) = seq.iter().position(|&t| t == eot_id) else { bail!("prompt {text:?} has no {EOT} token") };
        if seq.len() > context {
            bail!(UsageError::new(format!(
                "model.n_ctx = {n_ctx}: prompt {text:?} has {} tokens, the text tower's context length is {context}; \
                 lower model.n_ctx or shorten the class text (CLIP's towers hold 77 tokens)",
                seq.len()
            )));
        }
        if unknown(tok, &seq) {
            bail!(UsageError::new(format!("class text {class_text:?} has words the tokenizer does not know")));
        }
        seq.resize(context, 0);
        ids.push(seq);
        eot.push(end);
    }
    Ok(PromptTokens { ids, eot, n_ctx })
}

/// The id the tokenizer gives the placeholder word on its own (`x</w>` = 343 in CLIP's BPE).
fn placeholder_id(tok: &Tokenizer) -> Result<u32> {
    let enc = tok.encode(PLACEHOLDER, true).map_err(|e| anyhow::anyhow!("tokenizing {PLACEHOLDER:?}: {e}"))?;
    match enc.get_ids() {
        [_, p, _] => Ok(*p),
        other => bail!("the tokenizer does not encode the placeholder {PLACEHOLDER:?} as one token between start and end ({other:?})"),
    }
}

fn unknown(tok: &Tokenizer, seq: &[u32]) -> bool {
    tok.token_to_id("<unk>").is_some_and(|u| seq.contains(&u))
}

/// The learnable context, N(0, 0.02²) as in CoOp: `prompt_learner.ctx [n_ctx, width]` shared by
/// all classes, or `[K, n_ctx, width]` with one context per class.
pub(crate) struct PromptLearner {
    ctx: Tensor,
    tokens: PromptTokens,
    ids: Tensor,
}

impl PromptLearner {
    pub(crate) fn new(
        store: &mut ParamStore,
        tokens: PromptTokens,
        width: usize,
        class_specific: bool,
    ) -> Result<Self> {
        let k = tokens.ids.len();
        let shape = if class_specific { vec![k, tokens.n_ctx, width] } else { vec![tokens.n_ctx, width] };
        let ctx = store.scope("prompt_learner", Group::Prompts).normal("ctx", &shape, 0.02)?;
        let flat: Vec<u32> = tokens.ids.concat();
        let ids = Tensor::from_vec(flat, (tokens.ids.len(), tokens.ids[0].len()), store.device())?;
        Ok(Self { ctx, tokens, ids })
    }

    pub(crate) fn classes(&self) -> usize {
        self.tokens.ids.len()
    }

    /// Class text features `[K, embed_dim]` through the text tower.
    pub(crate) fn class_features(&self, text: &TextTower) -> Result<Tensor> {
        let (x, eot) = self.embeddings(text)?;
        text.forward_embeddings(&x, eot)
    }

    /// The prompts' token embeddings with the context in place `[K, L, width]`, and where each
    /// prompt's end-of-text token is.
    pub(crate) fn embeddings(&self, text: &TextTower) -> Result<(Tensor, &[usize])> {
        let emb = text.embed_tokens(&self.ids)?;
        let (k, l, w) = emb.dims3()?;
        let n = self.tokens.n_ctx;
        let ctx =
            if self.ctx.rank() == 3 { self.ctx.clone() } else { self.ctx.unsqueeze(0)?.broadcast_as((k, n, w))? };
        let x = Tensor::cat(&[&emb.narrow(1, 0, 1)?, &ctx, &emb.narrow(1, 1 + n, l - 1 - n)?], 1)?;
        Ok((x, &self.tokens.eot))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer;
    use super::*;

    #[test]
    fn word_tokenizer_round_trips_through_a_file_and_places_the_context() {
        let labels: Vec<String> = ["Happy", "Sad", "Neutral"].iter().map(|s| s.to_string()).collect();
        let tok = tokenizer::words(&labels, PLACEHOLDER).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let tok = tokenizer::load_file(&path).unwrap();
        let p = tokenize_prompts(&tok, &labels, 4, 12).unwrap();
        assert_eq!(p.ids[0][..8], [1, 3, 3, 3, 3, 5, 4, 2]);
        assert_eq!(p.eot, vec![7, 7, 7]);
        assert!(p.ids.iter().all(|s| s.len() == 12));
        let e = tokenize_prompts(&tok, &["Fear".to_string()], 4, 12).unwrap_err();
        assert!(format!("{e:#}").contains("\"Fear\" has words the tokenizer does not know"), "{e:#}");
        let e = tokenize_prompts(&tok, &labels, 10, 12).unwrap_err();
        assert!(format!("{e:#}").contains("context length"), "{e:#}");
        let e = tokenizer::load_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(format!("{e:#}").contains("missing.json"), "{e:#}");
    }

    /// Every label of every dataset description makes a valid prompt with CLIP's real BPE, at the
    /// shortest and longest context this project uses; multi-token names keep all their tokens.
    #[test]
    fn every_dataset_label_makes_a_prompt_with_clips_tokenizer() {
        let tok = tokenizer::clip().expect("CLIP merges file (scripts/setup.sh --assets)");
        let mut n = 0;
        for name in ["dfew", "ferv39k", "mafw"] {
            let desc = crate::dataset::DatasetDesc::load(name).unwrap();
            for n_ctx in [4, 16] {
                let p = tokenize_prompts(&tok, &desc.labels, n_ctx, 77).unwrap();
                for (k, label) in desc.labels.iter().enumerate() {
                    let seq = &p.ids[k];
                    assert!(seq[1..=n_ctx].iter().all(|&t| t == 343), "{name} {label}: {seq:?}");
                    let word = tok.encode(label.to_lowercase().as_str(), false).unwrap().get_ids().to_vec();
                    assert_eq!(&seq[1 + n_ctx..1 + n_ctx + word.len()], word.as_slice(), "{name} {label}");
                    assert_eq!(seq[1 + n_ctx + word.len()], 269, "{name} {label}: '.' follows the class name");
                    assert_eq!(p.eot[k], 2 + n_ctx + word.len(), "{name} {label}");
                    assert_eq!(seq[p.eot[k]], 49407);
                    n += 1;
                }
            }
        }
        assert_eq!(n, 2 * (7 + 7 + 11));
        // A text that brings its own full stop (the authors' descriptions do) gets no second one.
        let p = tokenize_prompts(&tok, &["wide eyes.".to_string(), "wide eyes".to_string()], 4, 77).unwrap();
        assert_eq!(p.ids[0], p.ids[1]);
    }
}
