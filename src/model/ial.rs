//! The intensity-aware loss (IAL) of Li et al., "Intensity-Aware Loss for Dynamic Facial
//! Expression Recognition in the Wild" (arXiv 2208.10335, AAAI 2023): a cross-entropy over the
//! target class and the most confusable other class only, so a low-intensity clip whose target
//! barely leads (or trails) one rival counts as much as its margin to that rival says.
//!
//! Formula (paper and its public training code): with logits `z` and target `t`,
//! `c = argmax_{k ≠ t} z_k` and `L_IAL = −log(e^{z_t} / (e^{z_t} + e^{z_c})) = softplus(z_c − z_t)`,
//! averaged over the batch, added to the training loss as `λ · L_IAL`. The choice of `c` takes no
//! gradient; the gradient reaches `z_t` and `z_c` only. The authors' code weights it 0.1 (a
//! comment there says 0.5); dfer's default is 0 (off), `loss.ial = λ` turns it on.

use anyhow::Result;
use candle_core::{DType, Tensor, D};

/// `L_IAL` of `logits [B, K]` (K ≥ 2) for `labels [B]` (u32): a scalar.
pub(crate) fn intensity_aware_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, k) = logits.dims2()?;
    anyhow::ensure!(k >= 2, "the intensity-aware loss needs at least 2 classes, not {k}");
    let labels = labels.to_dtype(DType::U32)?.reshape((b, 1))?;
    // The rival: the largest logit once the target's is pushed out of reach (no gradient).
    let classes = Tensor::arange(0u32, k as u32, logits.device())?.reshape((1, k))?;
    let is_target = classes.broadcast_eq(&labels)?.to_dtype(logits.dtype())?;
    let pushed = (logits.detach() - (is_target * 1e9)?)?;
    let rival = pushed.argmax_keepdim(D::Minus1)?;
    let z_t = logits.gather(&labels, 1)?;
    let z_c = logits.gather(&rival, 1)?;
    Ok(softplus(&(z_c - z_t)?)?.mean_all()?)
}

/// `log(1 + e^x)`, computed as `max(x, 0) + log(1 + e^{−|x|})` so it never overflows.
fn softplus(x: &Tensor) -> Result<Tensor> {
    Ok((x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn hand_worked_example_and_gradient_reaches_only_target_and_rival() {
        // Clip 0: target 0 (2.0), rival class 1 (1.0): softplus(-1) = ln(1 + e^-1) = 0.313262.
        // Clip 1: target 2 (1.0), rival class 1 (3.0): softplus(2) = ln(1 + e^2) = 2.126928.
        let z = Var::from_vec(vec![2.0f32, 1.0, 0.5, 0.0, 3.0, 1.0], (2, 3), &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let loss = intensity_aware_loss(z.as_tensor(), &labels).unwrap();
        let want = (0.313_262 + 2.126_928) / 2.0;
        assert!((loss.to_scalar::<f32>().unwrap() - want).abs() < 1e-5, "{loss}");
        let g = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = g.get(z.as_tensor()).unwrap().to_vec2().unwrap();
        // d/dz_c = σ(z_c − z_t) / B, d/dz_t = −σ(z_c − z_t) / B, every other class 0.
        let s0 = 1.0 / (1.0 + 1f32.exp()) / 2.0;
        let s1 = 1.0 / (1.0 + (-2f32).exp()) / 2.0;
        let want_g = [[-s0, s0, 0.0], [0.0, s1, -s1]];
        for (row, want_row) in g.iter().zip(want_g) {
            for (a, b) in row.iter().zip(want_row) {
                assert!((a - b).abs() < 1e-6, "gradient {g:?}, expected {want_g:?}");
            }
        }
    }

    #[test]
    fn large_margins_stay_finite() {
        let z = Tensor::new(&[[200f32, -200.0], [-200.0, 200.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 0], &Device::Cpu).unwrap();
        let loss = intensity_aware_loss(&z, &labels).unwrap().to_scalar::<f32>().unwrap();
        assert!((loss - 200.0).abs() < 1e-3, "mean of softplus(-400) and softplus(400): {loss}");
    }
}
