//! A light channel gate on per-frame feature vectors (`model.frame_gate = true`), for the CLIP
//! methods (OUS, DFER-CLIP): ours, modelled on the global convolution-attention block (GCA) of
//! Li et al. (AAAI 2023, arXiv 2208.10335) but **not** their block. Their GCA sits inside the
//! residual blocks of a ResNet-18 and convolves whole feature maps; it is built, as their code
//! builds it, by `model.method = "ial"` ([`super::ial_net`]). A CLIP tower has no feature maps
//! to put it in, so this gate runs on the tower's pooled per-frame features `[B, T, E]` before
//! temporal modelling, where a convolution over a 1×1 map is a learned per-channel scale `a`
//! (initialised to 1): `g_t = a ⊙ x_t`, the gate `s_t = 2·σ(W2 ReLU(W1 g_t))` (reduction 16, no
//! biases, as theirs), joined with the clip's mean gate, `w_t = √(s_t ⊙ mean_t(s) + 1e-5)`, and
//! `y_t = x_t ⊙ w_t`.

use anyhow::Result;
use candle_core::{Module, Tensor};
use candle_nn::ops::sigmoid;

use super::layers::{Bias, Linear};
use super::params::Scope;

/// Channel reduction of the gate (as GCA's in Li et al.'s code: 16).
const REDUCTION: usize = 16;

/// `frame_gate`: `scale [E]`, `fc1 [E/16, E]`, `fc2 [E, E/16]`.
pub(crate) struct FrameGate {
    scale: Tensor,
    fc1: Linear,
    fc2: Linear,
}

impl FrameGate {
    pub(crate) fn new(s: &mut Scope, dim: usize) -> Result<Self> {
        let mut s = s.sub("frame_gate");
        let hidden = (dim / REDUCTION).max(1);
        Ok(Self {
            scale: s.constant("scale", &[dim], 1.0)?,
            fc1: Linear::new(&mut s, "fc1", dim, hidden, Bias::Without, (dim as f64).powf(-0.5))?,
            fc2: Linear::new(&mut s, "fc2", hidden, dim, Bias::Without, (hidden as f64).powf(-0.5))?,
        })
    }

    /// Frame features `x [B, T, E]`, each frame's channels rescaled by its gate joined with the
    /// clip's mean gate.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = x.broadcast_mul(&self.scale)?;
        let s = (sigmoid(&self.fc2.forward(&self.fc1.forward(&g)?.relu()?)?)? * 2.0)?;
        let mean = s.mean_keepdim(1)?;
        let w = (s.broadcast_mul(&mean)? + 1e-5)?.sqrt()?;
        Ok((x * w)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::super::params::{Group, ParamStore};
    use super::*;

    /// The block against the formula worked out in f64 on a clip of two frames of 16 channels
    /// (one gate unit), and its gradient reaching every parameter.
    #[test]
    fn gates_frames_as_the_formula_says_and_trains() {
        let mut store = ParamStore::new(&Device::Cpu, 3);
        let gate = FrameGate::new(&mut store.scope("h", Group::Head), 16).unwrap();
        let x: Vec<f32> = (0..32).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
        let xt = Tensor::from_slice(&x, (1, 2, 16), &Device::Cpu).unwrap();
        let y = gate.forward(&xt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w1 = gate.fc1.forward(&Tensor::eye(16, candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
        let w1: Vec<f32> = w1.flatten_all().unwrap().to_vec1().unwrap(); // w1[c] = W1[0][c]
        let w2 = gate.fc2.forward(&Tensor::ones((1, 1), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
        let w2: Vec<f32> = w2.flatten_all().unwrap().to_vec1().unwrap(); // w2[c] = W2[c][0]
        let gate_of = |t: usize| -> Vec<f64> {
            let h: f64 = (0..16).map(|c| w1[c] as f64 * x[16 * t + c] as f64).sum::<f64>().max(0.0);
            (0..16).map(|c| 2.0 / (1.0 + (-(w2[c] as f64) * h).exp())).collect()
        };
        let (s0, s1) = (gate_of(0), gate_of(1));
        for t in 0..2 {
            for c in 0..16 {
                let s = if t == 0 { s0[c] } else { s1[c] };
                let want = x[16 * t + c] as f64 * (s * (s0[c] + s1[c]) / 2.0 + 1e-5).sqrt();
                assert!(
                    (y[16 * t + c] as f64 - want).abs() < 1e-5,
                    "frame {t} channel {c}: {} vs {want}",
                    y[16 * t + c]
                );
            }
        }
        let loss = gate.forward(&xt).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in store.group(Group::Head) {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}");
        }
    }
}
