//! Text tokenizers for the CLIP text tower, all through the `tokenizers` crate:
//! - CLIP's own byte-level BPE, built from the merges file that OpenAI released with CLIP
//!   (`bpe_simple_vocab_16e6.txt.gz`, shipped in the `open_clip_torch` wheel and installed by
//!   `scripts/setup.sh`), with the pipeline of Hugging Face's `CLIPTokenizerFast`: NFC, whitespace
//!   collapse, lower-case, CLIP's split pattern, byte-level alphabet, `</w>` end-of-word suffix,
//!   `<|startoftext|>` 49406 and `<|endoftext|>` 49407 around every text;
//! - any Hugging Face `tokenizer.json`;
//! - a word-level vocabulary of the label names, only for towers with random weights.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::prompts::PLACEHOLDER;
use crate::assets::{self, Asset};
use crate::error::UsageError;
use crate::weights::ClipFiles;

pub(crate) const SOT: &str = "<|startoftext|>";
pub(crate) const EOT: &str = "<|endoftext|>";

/// Merge lines of the BPE file that CLIP uses: lines 1 ..= 48,894 after the version header
/// (49,152 − 256 − 2 merges), so the vocabulary is 256 bytes + 256 end-of-word bytes +
/// 48,894 merges + 2 special tokens = 49,408.
const CLIP_MERGES: usize = 49152 - 256 - 2;
/// CLIP's pre-tokenisation pattern (after lower-casing, so case-insensitivity is moot).
const CLIP_SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// `model.tokenizer`: which tokenizer makes the prompts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum TokenizerChoice {
    /// The weights' own `tokenizer.json` when they come with one, else CLIP's BPE; the word
    /// vocabulary when there are no weights.
    Auto,
    /// Word-level vocabulary of the label names (random-weight towers only).
    Words,
    /// CLIP's BPE, built in (needs only the merges file from `scripts/setup.sh`).
    Clip,
    /// A Hugging Face `tokenizer.json`.
    File(PathBuf),
}

impl TokenizerChoice {
    pub(crate) fn as_str(&self) -> String {
        match self {
            TokenizerChoice::Auto => "auto".into(),
            TokenizerChoice::Words => "words".into(),
            TokenizerChoice::Clip => "clip".into(),
            TokenizerChoice::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

impl FromStr for TokenizerChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => TokenizerChoice::Auto,
            "words" => TokenizerChoice::Words,
            "clip" => TokenizerChoice::Clip,
            "" => return Err("model.tokenizer is empty (auto | clip | words | path of a tokenizer.json)".into()),
            path => TokenizerChoice::File(PathBuf::from(path)),
        })
    }
}

impl TryFrom<String> for TokenizerChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TokenizerChoice> for String {
    fn from(c: TokenizerChoice) -> String {
        c.as_str()
    }
}

impl fmt::Display for TokenizerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The tokenizer `choice` gives for these weights (`None`: random towers) and a description of
/// it, refusing one that cannot feed the text tower: the word vocabulary with real weights (its
/// ids would index CLIP's embedding table at random), or a vocabulary larger than the tower's.
pub(crate) fn choose(
    choice: &TokenizerChoice,
    weights: Option<&ClipFiles>,
    texts: &[String],
    vocab_size: usize,
) -> Result<(Tokenizer, String)> {
    let (tok, kind) = match (choice, weights) {
        (TokenizerChoice::Words, Some(w)) => bail!(UsageError::new(format!(
            "model.tokenizer = \"words\" cannot drive real CLIP weights ({}): its ids are not CLIP's; \
             set model.tokenizer = \"auto\" or \"clip\"",
            w.weights.display()
        ))),
        (TokenizerChoice::Words | TokenizerChoice::Auto, None) => {
            (words(texts, PLACEHOLDER)?, "word vocabulary of the class texts".to_string())
        }
        (TokenizerChoice::Auto, Some(ClipFiles { tokenizer: Some(file), .. })) | (TokenizerChoice::File(file), _) => {
            (load_file(file)?, file.display().to_string())
        }
        (TokenizerChoice::Auto, Some(_)) | (TokenizerChoice::Clip, _) => (clip()?, "CLIP's BPE".to_string()),
    };
    let size = tok.get_vocab_size(true);
    if size > vocab_size {
        bail!(UsageError::new(format!(
            "model.tokenizer = \"{choice}\" has {size} tokens, the text tower's embedding only {vocab_size}: \
             use the tokenizer of these weights, or towers with CLIP's vocabulary (model.arch = \"vit-b16\" or \"config\")"
        )));
    }
    Ok((tok, kind))
}

/// Loads `tokenizer.json`, naming the file on failure.
pub(crate) fn load_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))
}

/// CLIP's tokenizer from the merges file installed in the asset cache.
pub(crate) fn clip() -> Result<Tokenizer> {
    clip_from_merges(&assets::path(Asset::ClipBpe)?)
}

/// CLIP's tokenizer from a `bpe_simple_vocab_16e6.txt.gz` file.
pub(crate) fn clip_from_merges(path: &Path) -> Result<Tokenizer> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: not a gzip-compressed text file", path.display()))?;
    let merges: Vec<(&str, &str)> = text
        .split('\n')
        .skip(1)
        .take(CLIP_MERGES)
        .map(|line| line.split_once(' ').filter(|(a, b)| !a.is_empty() && !b.contains(' ')))
        .collect::<Option<_>>()
        .with_context(|| format!("{}: a merge line is not two symbols", path.display()))?;
    ensure!(merges.len() == CLIP_MERGES, "{}: has {} merges, CLIP needs {CLIP_MERGES}", path.display(), merges.len());
    let alphabet = byte_alphabet();
    let mut vocab: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    vocab.extend(alphabet.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    vocab.extend([SOT.to_string(), EOT.to_string()]);
    let tok = Tokenizer::from_str(&clip_json(&vocab, &merges).to_string())
        .map_err(|e| anyhow::anyhow!("{}: building CLIP's tokenizer: {e}", path.display()))?;
    ensure!(tok.get_vocab_size(true) == 49408, "{}: CLIP vocabulary is not 49,408 tokens", path.display());
    Ok(tok)
}

/// GPT-2 / CLIP byte-to-character table in vocabulary order: the printable bytes keep their
/// character, the other 68 map to U+0100 onwards in byte order.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut chars: Vec<char> = (0..256u32).filter(|&b| printable(b)).filter_map(char::from_u32).collect();
    chars
        .extend((0..256u32).filter(|&b| !printable(b)).enumerate().filter_map(|(n, _)| char::from_u32(256 + n as u32)));
    chars
}

/// The `tokenizer.json` of CLIP's tokenizer in the form Hugging Face writes it.
fn clip_json(vocab: &[String], merges: &[(&str, &str)]) -> serde_json::Value {
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, w)| (w.clone(), serde_json::json!(i))).collect();
    let added = |id: usize, content: &str| {
        serde_json::json!({ "id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": true })
    };
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [added(49406, SOT), added(49407, EOT)],
        "normalizer": { "type": "Sequence", "normalizers": [
            { "type": "NFC" },
            { "type": "Replace", "pattern": { "Regex": r"\s+" }, "content": " " },
            { "type": "Lowercase" } ] },
        "pre_tokenizer": { "type": "Sequence", "pretokenizers": [
            { "type": "Split", "pattern": { "Regex": CLIP_SPLIT }, "behavior": "Removed", "invert": true },
            { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false } ] },
        "post_processor": { "type": "RobertaProcessing", "sep": [EOT, 49407], "cls": [SOT, 49406],
            "trim_offsets": false, "add_prefix_space": false },
        "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
        "model": { "type": "BPE", "dropout": null, "unk_token": EOT, "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
            "vocab": vocab, "merges": merges.iter().map(|(a, b)| [a, b]).collect::<Vec<_>>() }
    })
}

/// A word-level tokenizer over the placeholder, "." and the words and punctuation of the class
/// `texts` (lower-cased, split as its whitespace pre-tokenizer splits them), with CLIP's start /
/// end tokens. Only meaningful for random-weight towers.
pub(crate) fn words(texts: &[String], placeholder: &str) -> Result<Tokenizer> {
    let mut vocab: Vec<String> = vec!["<unk>".into(), SOT.into(), EOT.into(), placeholder.into(), ".".into()];
    for text in texts {
        for w in pre_tokens(&text.to_lowercase()) {
            if !vocab.contains(&w) {
                vocab.push(w);
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

/// `text` split like the `Whitespace` pre-tokenizer: runs of word characters, and runs of
/// other non-space characters.
fn pre_tokens(text: &str) -> Vec<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<bool> = None;
    for c in text.chars() {
        if c.is_whitespace() {
            last = None;
            continue;
        }
        match out.last_mut() {
            Some(run) if last == Some(word(c)) => run.push(c),
            _ => out.push(c.to_string()),
        }
        last = Some(word(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
        tok.encode(text, true).unwrap().get_ids().to_vec()
    }

    #[test]
    fn clip_bpe_gives_clips_ids_on_the_real_merges() {
        let tok = clip().expect("CLIP merges file (scripts/setup.sh --assets)");
        assert_eq!(ids(&tok, "a photo of a cat."), [49406, 320, 1125, 539, 320, 2368, 269, 49407]);
        assert_eq!(ids(&tok, "x"), [49406, 343, 49407]);
        assert_eq!(ids(&tok, "X  x\tX"), [49406, 343, 343, 343, 49407], "case and whitespace are normalised");
        assert_eq!(tok.get_vocab_size(true), 49408);
    }

    /// Ids made by open_clip's own tokenizer and transformers' CLIPTokenizerFast from the same
    /// merges file (`bench/tokenizer_reference.py`): prompts of every dataset label and odd text.
    #[test]
    fn clip_bpe_matches_transformers_and_open_clip() {
        let tok = clip().expect("CLIP merges file (scripts/setup.sh --assets)");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip_tokens.json");
        let refs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let entries = refs["entries"].as_array().unwrap();
        assert!(entries.len() >= 80, "{} reference strings", entries.len());
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("tokenizer.json");
        tok.save(&saved, false).unwrap();
        let reloaded = load_file(&saved).unwrap();
        for e in entries {
            let text = e["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(e["ids"].clone()).unwrap();
            assert_eq!(ids(&tok, text), want, "{text:?}");
            assert_eq!(ids(&reloaded, text), want, "{text:?} through a saved tokenizer.json");
        }
    }

    #[test]
    fn byte_alphabet_is_clips_order() {
        let a = byte_alphabet();
        assert_eq!(a.len(), 256);
        assert_eq!(a[0], '!');
        assert_eq!(a[87], 'x', "'x' is vocabulary entry 87, so 'x</w>' is 256 + 87 = 343");
        assert_eq!(a[188], '\u{100}', "byte 0 is the first non-printable byte");
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn choice_round_trips_through_its_string() {
        for s in ["auto", "words", "clip", "w/tokenizer.json"] {
            assert_eq!(s.parse::<TokenizerChoice>().unwrap().as_str(), s);
        }
        assert!("".parse::<TokenizerChoice>().is_err());
    }

    #[test]
    fn a_broken_merges_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bpe.txt.gz");
        std::fs::write(&p, b"not gzip").unwrap();
        let e = format!("{:#}", clip_from_merges(&p).unwrap_err());
        assert!(e.contains("bpe.txt.gz") && e.contains("gzip"), "{e}");
    }
}
