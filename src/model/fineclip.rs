//! FineCLIPER (Chen et al., "FineCLIPER: Multi-modal Fine-grained CLIP for Dynamic Facial
//! Expression Recognition with AdaptERs", ACM MM 2024, arXiv 2407.02157), video only, as far as
//! it can be known (its code is not public): docs/methods.md "FineCLIPER" says what is the
//! paper's and what is ours.
//!
//! Every CLIP weight stays frozen. Face frames go through the image tower with an adapter pair in
//! each block ([`super::adapter`]); the video feature is the mean of the frames' projected
//! features (ours). Each class has a positive prompt, "x … x a person with an expression of
//! {label}.", and a negative one, "… of no {label}." (the paper's templates), with one learnable
//! context shared by all of them (ours), through the text tower with an adapter set of its own
//! per polarity (paper). The class score weighs the two similarities adaptively (ours: learned
//! weights `w = softmax(fusion)`, starting equal): `100 · (w₀ cos(v, pos_k) − w₁ cos(v, neg_k))`.
//! With the description stream on (`model.video_descriptions`), each clip's description goes
//! through the text tower with adapters of its own (paper), and the clip feature `v` is the
//! normalised sum of the video's and the description's normalised features, weighted by
//! `a = softmax(streams)` (ours, starting equal). With the landmark stream on (`model.landmarks`,
//! our substitute for the paper's landmark and parsing inputs: the detector's five points drawn
//! on the face crops), those frames go through the image tower with adapters of their own and
//! their mean joins the sum the same way.
//! Trained: the adapters, the context and the fusion and stream weights, nothing else.

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Tensor, D};
use candle_nn::ops::softmax;

use super::adapter::TowerAdapters;
use super::clip::{normalize, TextConfig, TextTower, VisionConfig, VisionOutput, VisionTower};
use super::params::Scope;
use super::prompts::PromptLearner;

/// Fixed logit scale (ours, as DFER-CLIP's code: 1 / 0.01).
const LOGIT_SCALE: f64 = 100.0;

/// The positive and negative label texts (paper's templates), positives first.
pub(crate) fn label_texts(labels: &[String]) -> Vec<String> {
    let positive = labels.iter().map(|l| format!("a person with an expression of {l}"));
    let negative = labels.iter().map(|l| format!("a person with an expression of no {l}"));
    positive.chain(negative).collect()
}

/// `fineclip.*`: the adapters of both towers and the fusion weights.
pub(crate) struct FineClipHead {
    image: TowerAdapters,
    text_positive: TowerAdapters,
    text_negative: TowerAdapters,
    /// `[2]`: the weights of the positive and negative similarities, before the softmax.
    fusion: Tensor,
    /// The description stream's text adapters, when it is on.
    description: Option<TowerAdapters>,
    /// The landmark stream's image adapters, when it is on.
    points: Option<TowerAdapters>,
    /// `[S]`: the weights of the streams (video, then descriptions and landmarks where on)
    /// before the softmax; absent with video only.
    streams: Option<Tensor>,
}

/// The streams beside the video that a FineCLIPER network reads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Streams {
    /// Per-clip descriptions through the text tower.
    pub descriptions: bool,
    /// Face frames with their landmarks drawn on, through the image tower.
    pub landmarks: bool,
}

impl FineClipHead {
    /// Adapters of bottleneck `ratio` × width and MLP-side scale `scale` in every block, for
    /// the video and the `streams` that are on.
    pub(crate) fn new(
        s: &mut Scope,
        (vcfg, tcfg): (&VisionConfig, &TextConfig),
        (ratio, scale): (f64, f64),
        streams: Streams,
    ) -> Result<Self> {
        let image = TowerAdapters::new(&mut s.sub("image"), vcfg.layers, vcfg.width, ratio, scale)?;
        let text_positive = TowerAdapters::new(&mut s.sub("text_positive"), tcfg.layers, tcfg.width, ratio, scale)?;
        let text_negative = TowerAdapters::new(&mut s.sub("text_negative"), tcfg.layers, tcfg.width, ratio, scale)?;
        let fusion = s.constant("fusion", &[2], 0.0)?;
        let adapters = |s: &mut Scope, name: &str, on: bool, (layers, width): (usize, usize)| match on {
            true => TowerAdapters::new(&mut s.sub(name), layers, width, ratio, scale).map(Some),
            false => Ok(None),
        };
        let description = adapters(s, "text_description", streams.descriptions, (tcfg.layers, tcfg.width))?;
        let points = adapters(s, "image_points", streams.landmarks, (vcfg.layers, vcfg.width))?;
        let n = 1 + usize::from(streams.descriptions) + usize::from(streams.landmarks);
        let streams = if n > 1 { Some(s.constant("streams", &[n], 0.0)?) } else { None };
        Ok(Self { image, text_positive, text_negative, fusion, description, points, streams })
    }

    /// The frozen image tower with the adapters over `images [N, 3, S, S]`.
    pub(crate) fn encode(&self, tower: &VisionTower, images: &Tensor) -> Result<VisionOutput> {
        tower.forward_adapted(images, 0, Some(&self.image))
    }

    /// Text features `[2K, E]` of the prompts (positives, then negatives) through the frozen
    /// text tower, each half with its own adapters.
    pub(crate) fn class_features(&self, prompts: &PromptLearner, text: &TextTower) -> Result<Tensor> {
        let (x, eot) = prompts.embeddings(text)?;
        let n = x.dim(0)?;
        ensure!(n % 2 == 0, "FineCLIPER's prompts come in positive / negative pairs, not {n}");
        let k = n / 2;
        let pos = text.forward_embeddings_adapted(&x.narrow(0, 0, k)?, &eot[..k], Some(&self.text_positive))?;
        let neg = text.forward_embeddings_adapted(&x.narrow(0, k, k)?, &eot[k..], Some(&self.text_negative))?;
        Ok(Tensor::cat(&[&pos, &neg], 0)?)
    }

    /// The frozen image tower with the landmark stream's adapters over `images [N, 3, S, S]`.
    pub(crate) fn encode_points(&self, tower: &VisionTower, images: &Tensor) -> Result<VisionOutput> {
        let adapters = self.points.as_ref().context("the landmark stream is off")?;
        tower.forward_adapted(images, 0, Some(adapters))
    }

    /// Description features `[B, E]` of token ids `[B, L]` ending at `eot`, through the frozen
    /// text tower with the description adapters.
    pub(crate) fn describe(&self, text: &TextTower, ids: &Tensor, eot: &[usize]) -> Result<Tensor> {
        let adapters = self.description.as_ref().context("the description stream is off")?;
        text.forward_embeddings_adapted(&text.embed_tokens(ids)?, eot, Some(adapters))
    }

    /// The clip feature (normalised): the video's, or with optional streams the stream-weighted
    /// sum of the normalised features of the video, the descriptions `[B, E]` and the landmark
    /// frames `[B, T, E]` (their mean), each given exactly when its stream is on.
    fn clip_feature(&self, face: &Tensor, description: Option<&Tensor>, points: Option<&Tensor>) -> Result<Tensor> {
        let mut feats = vec![normalize(&face.mean(1)?)?];
        match (&self.description, description) {
            (Some(_), Some(d)) => feats.push(normalize(d)?),
            (None, None) => {}
            (on, _) => {
                bail!("the description stream is {} and the batch {} descriptions", on_off(on), has(description))
            }
        }
        match (&self.points, points) {
            (Some(_), Some(p)) => feats.push(normalize(&p.mean(1)?)?),
            (None, None) => {}
            (on, _) => bail!("the landmark stream is {} and the batch {} landmark frames", on_off(on), has(points)),
        }
        let Some(streams) = &self.streams else { return Ok(feats.remove(0)) };
        let a = softmax(streams, D::Minus1)?;
        let mut sum = feats[0].broadcast_mul(&a.narrow(0, 0, 1)?)?;
        for (i, f) in feats.iter().enumerate().skip(1) {
            sum = (sum + f.broadcast_mul(&a.narrow(0, i, 1)?)?)?;
        }
        normalize(&sum)
    }

    /// Class scores `[B, K]` from frame features `face [B, T, E]`, the optional streams'
    /// features `(description [B, E], points [B, T, E])` where on, and `text [2K, E]`.
    pub(crate) fn logits(
        &self,
        face: &Tensor,
        streams: (Option<&Tensor>, Option<&Tensor>),
        text: &Tensor,
    ) -> Result<Tensor> {
        let k = text.dim(0)? / 2;
        let video = self.clip_feature(face, streams.0, streams.1)?;
        let text = normalize(text)?;
        let cos = |t: Tensor| -> Result<Tensor> { Ok(video.matmul(&t.t()?)?) };
        let (pos, neg) = (cos(text.narrow(0, 0, k)?)?, cos(text.narrow(0, k, k)?)?);
        let w = softmax(&self.fusion, D::Minus1)?;
        let score = (pos.broadcast_mul(&w.narrow(0, 0, 1)?)? - neg.broadcast_mul(&w.narrow(0, 1, 1)?)?)?;
        Ok((score * LOGIT_SCALE)?)
    }
}

fn on_off<T>(x: &Option<T>) -> &'static str {
    if x.is_some() {
        "on"
    } else {
        "off"
    }
}

fn has<T>(x: Option<T>) -> &'static str {
    if x.is_some() {
        "has"
    } else {
        "has no"
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::clip::VisionTower;
    use crate::model::config::{Arch, ModelConfig};
    use crate::model::params::{Group, ParamStore};
    use crate::model::prompts::{tokenize_prompts, PLACEHOLDER};
    use crate::model::tokenizer;

    /// A head for the tiny towers with `streams` on, drawing from a store seeded 4.
    fn tiny_head(streams: Streams) -> (FineClipHead, ParamStore) {
        let cfg = ModelConfig { arch: Arch::Tiny, ..Default::default() };
        let (vcfg, tcfg, _) = cfg.towers(None).unwrap();
        let mut store = ParamStore::new(&Device::Cpu, 4);
        let head =
            FineClipHead::new(&mut store.scope("fineclip", Group::Head), (&vcfg, &tcfg), (0.25, 0.5), streams).unwrap();
        (head, store)
    }

    /// With the up-projections at zero (their initialisation) both towers compute what plain
    /// CLIP computes, up to the rounding of the differentiable LayerNorm and softmax that a
    /// tracked input takes: the adapters change nothing until they are trained.
    #[test]
    fn untrained_adapters_leave_both_towers_as_plain_clip() {
        let cfg = ModelConfig { arch: Arch::Tiny, ..Default::default() };
        let (vcfg, tcfg, e) = cfg.towers(None).unwrap();
        let mut store = ParamStore::new(&Device::Cpu, 4);
        let vision = VisionTower::new(&mut store, "clip", &vcfg, e).unwrap().detached(candle_core::DType::F32).unwrap();
        let text = TextTower::new(&mut store, "clip", &tcfg, e).unwrap().detached().unwrap();
        let labels: Vec<String> = ["Happy", "Sad"].iter().map(|s| s.to_string()).collect();
        let texts = label_texts(&labels);
        let tok = tokenizer::words(&texts, PLACEHOLDER).unwrap();
        let tokens = tokenize_prompts(&tok, &texts, 2, tcfg.context_length).unwrap();
        let prompts = PromptLearner::new(&mut store, tokens, tcfg.width, false).unwrap();
        let head = FineClipHead::new(
            &mut store.scope("fineclip", Group::Head),
            (&vcfg, &tcfg),
            (0.25, 0.5),
            Streams::default(),
        )
        .unwrap();

        let n = 3 * 3 * 32 * 32;
        let pixels: Vec<f32> = (0..n).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        let images = Tensor::from_vec(pixels, (3, 3, 32, 32), &Device::Cpu).unwrap();
        let plain = vision.forward(&images, 0).unwrap().embeds;
        let adapted = head.encode(&vision, &images).unwrap().embeds;
        let diff = (plain - adapted).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "image tower: {diff}");

        let (x, eot) = prompts.embeddings(&text).unwrap();
        let plain = text.forward_embeddings(&x, eot).unwrap();
        let adapted = head.class_features(&prompts, &text).unwrap();
        assert_eq!(adapted.dims(), [4, e], "two prompts per class");
        let diff = (plain - adapted).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "text tower: {diff}");
    }

    /// On ViT-B/16 (width 768 and 512, 12 blocks each) the adapters and fusion weights are
    /// 13,423,106 parameters; with a context of 4 × 512, 13,425,154 trained (paper: 13–20 M).
    #[test]
    fn vit_b16_adapters_are_as_many_parameters_as_the_paper_reports() {
        let (vcfg, tcfg, _) = crate::model::clip::vit_b16();
        let mut store = ParamStore::new(&Device::Cpu, 0);
        FineClipHead::new(&mut store.scope("fineclip", Group::Head), (&vcfg, &tcfg), (0.25, 0.5), Streams::default())
            .unwrap();
        // Per adapter: down (w·h + h) and up (h·w + w); two per block; one image and two text sets.
        let adapter = |w: usize| 2 * (w * w / 4) + w / 4 + w;
        assert_eq!(store.num_elements(Group::Head), 24 * adapter(768) + 2 * 24 * adapter(512) + 2);
        assert_eq!(store.num_elements(Group::Head), 13_423_106);
    }

    /// The class score: with equal fusion weights, half the difference of the positive and
    /// negative cosine similarities, times 100.
    #[test]
    fn class_scores_weigh_positive_against_negative_prompts() {
        let (head, _) = tiny_head(Streams::default());
        let dev = Device::Cpu;
        // One clip of two frames whose mean is (1, 0); positive prompt (1, 0), negative (0, 1).
        let face = Tensor::new(&[[[2f32, 1.0], [0.0, -1.0]]], &dev).unwrap();
        let text = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &dev).unwrap();
        let z = head.logits(&face, (None, None), &text).unwrap().to_vec2::<f32>().unwrap();
        assert!((z[0][0] - 50.0).abs() < 1e-3, "{z:?}");
        let e = head.logits(&face, (Some(&text), None), &text).unwrap_err();
        assert!(format!("{e:#}").contains("stream is off and the batch has descriptions"), "{e:#}");
    }

    /// With the description stream, the clip feature is the equal-weighted sum of the video's
    /// and the description's normalised features, normalised: video (1, 0) and description
    /// (0, 3) give (1, 1)/√2, whose cosines to a positive prompt (1, 0) and a negative one
    /// (−1, 0) are ±1/√2, so the score is 100 · (½ + ½)/√2.
    #[test]
    fn optional_streams_join_the_video_feature_with_equal_stream_weights() {
        let (head, store) = tiny_head(Streams { descriptions: true, landmarks: false });
        let dev = Device::Cpu;
        let face = Tensor::new(&[[[2f32, 0.0], [0.0, 0.0]]], &dev).unwrap();
        let description = Tensor::new(&[[0f32, 3.0]], &dev).unwrap();
        let text = Tensor::new(&[[1f32, 0.0], [-1.0, 0.0]], &dev).unwrap();
        let z = head.logits(&face, (Some(&description), None), &text).unwrap().to_vec2::<f32>().unwrap();
        assert!((z[0][0] - 100.0 / 2f32.sqrt()).abs() < 1e-3, "{z:?}");
        let e = head.logits(&face, (None, None), &text).unwrap_err();
        assert!(format!("{e:#}").contains("has no descriptions"), "{e:#}");
        assert!(
            store.get("fineclip.streams").is_some()
                && store.get("fineclip.text_description.0.attn.up.weight").is_some()
        );

        // Three streams, a third each: video (1, 0), description (0, 1), landmark frames whose
        // mean is (4, 0) give (2, 1)/√5, cosines ±2/√5, score 100 · 2/√5.
        let (head, store) = tiny_head(Streams { descriptions: true, landmarks: true });
        let points = Tensor::new(&[[[4f32, 1.0], [4.0, -1.0]]], &dev).unwrap();
        let z = head.logits(&face, (Some(&description), Some(&points)), &text).unwrap().to_vec2::<f32>().unwrap();
        assert!((z[0][0] - 200.0 / 5f32.sqrt()).abs() < 1e-3, "{z:?}");
        let e = head.logits(&face, (Some(&description), None), &text).unwrap_err();
        assert!(format!("{e:#}").contains("landmark stream is on and the batch has no landmark frames"), "{e:#}");
        assert_eq!(store.get("fineclip.streams").unwrap().as_tensor().dims(), [3]);
        assert!(store.get("fineclip.image_points.0.mlp.down.weight").is_some());
    }
}
