//! Convolutional building blocks with PyTorch's parameter names and semantics, for the IAL
//! network ([`super::ial_net`]): 2-D convolution without bias, BatchNorm2d with running
//! statistics, and `MaxPool2d(3, stride 2, padding 1)`.
//!
//! What candle 0.11 offers and where it falls short on CPU (this module's tests check the
//! replacements against candle's own ops and against finite differences):
//! - `conv2d` runs its forward fast (tiled im2col), but its backward computes the input's
//!   gradient with `conv_transpose2d`, a direct loop: 4.5 s against the forward's 0.33 s for 32
//!   images of 64 channels at 56 px (measured here, 2 cores). On CPU [`Conv2d`] is therefore a
//!   custom op whose backward computes that gradient as an ordinary convolution of the output
//!   gradient (dilated by the stride) with the flipped kernel, and the kernel's gradient as
//!   candle's own backward does. On CUDA the plain op runs with candle's backward.
//! - `max_pool2d` has no padding, and its backward needs kernel = stride; [`max_pool_3x3_s2`] is
//!   written as maxima of strided views, which are differentiable (ties share the gradient where
//!   PyTorch gives it to the first maximum).
//! - grouped convolution runs group by group (a depthwise kernel: one convolution call per
//!   channel). GCA's depthwise kernel covers the whole map, so the network computes it as a
//!   per-channel weighted sum instead ([`super::ial_net`]).

use anyhow::{ensure, Result};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, Var};

use super::layers::{cpu_input, cpu_output};
use super::params::Scope;

/// BatchNorm's ε and momentum (PyTorch's defaults, which their code keeps).
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// `Conv2d(bias=False)` with a square kernel: `weight [out, in, k, k]`.
pub(crate) struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// `weight` ~ N(0, 2 / (out·k²)): `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, as
    /// their ResNet initialises every convolution.
    pub(crate) fn new(
        s: &mut Scope,
        name: &str,
        (input, output): (usize, usize),
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        ensure!(padding < k && stride >= 1, "conv {name}: padding {padding} with a {k}×{k} kernel, stride {stride}");
        let std = (2.0 / (output * k * k) as f64).sqrt();
        let weight = s.sub(name).normal("weight", &[output, input, k, k], std)?;
        Ok(Self { weight, stride, padding })
    }

    /// `x [N, in, H, W]` → `[N, out, H', W']`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && (x.track_op() || self.weight.track_op()) {
            let op = FastBackwardConv { stride: self.stride, padding: self.padding };
            return Ok(x.contiguous()?.apply_op2(&self.weight, op)?);
        }
        Ok(x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?)
    }
}

impl Conv2d {
    /// A depthwise kernel `[C, 1, H, W]` as large as the map `x [N, C, H, W]` (PyTorch's
    /// `Conv2d(C, C, kernel_size=H, groups=C, bias=False)` on an H×W map, no padding): one value
    /// per channel, `Σ_hw weight[c] ⊙ x[n, c]` → `[N, C, 1, 1]`, computed as that weighted sum.
    pub(crate) fn whole_map_depthwise(&self, x: &Tensor) -> Result<Tensor> {
        let (c, one, kh, kw) = self.weight.dims4()?;
        let (_, xc, h, w) = x.dims4()?;
        ensure!(
            one == 1 && xc == c && (kh, kw) == (h, w) && self.padding == 0,
            "a whole-map depthwise kernel {:?} does not fit the map {:?}",
            self.weight.dims(),
            x.dims()
        );
        Ok(x.broadcast_mul(&self.weight.reshape((1, c, h, w))?)?.sum_keepdim((2, 3))?)
    }
}

/// candle's CPU convolution with a backward that avoids `conv_transpose2d` (module docs).
struct FastBackwardConv {
    stride: usize,
    padding: usize,
}

const CONV_OP: &str = "conv2d-fast-backward";

impl CustomOp2 for FastBackwardConv {
    fn name(&self) -> &'static str {
        CONV_OP
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (cpu_input(s1, l1, CONV_OP)?, cpu_input(s2, l2, CONV_OP)?);
        cpu_output(&x.conv2d(&w, self.padding, self.stride, 1, 1)?, CONV_OP)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (s, p) = (self.stride, self.padding);
        let grad = grad.contiguous()?;
        let grad_x = if x.track_op() { Some(input_gradient(&grad, &w.detach(), x.dims4()?, s, p)?) } else { None };
        let grad_w = kernel_gradient(&x.detach(), &grad, w.dim(2)?, s, p)?;
        Ok((grad_x, Some(grad_w)))
    }
}

/// The gradient of a convolution's input `[N, C, H, W]`: the output gradient, dilated by the
/// stride and padded by `k − 1 − p` (plus the rows and columns the forward's floor dropped),
/// convolved with the kernel flipped in both spatial dimensions and in / out swapped.
fn input_gradient(
    grad: &Tensor,
    w: &Tensor,
    (_, _, h, wd): (usize, usize, usize, usize),
    s: usize,
    p: usize,
) -> candle_core::Result<Tensor> {
    let k = w.dim(2)?;
    let q = k - 1 - p;
    let g = dilate(grad, s)?.pad_with_zeros(2, q, q + (h + 2 * p - k) % s)?.pad_with_zeros(
        3,
        q,
        q + (wd + 2 * p - k) % s,
    )?;
    let flipped = reverse(&reverse(w, 2)?, 3)?.transpose(0, 1)?.contiguous()?;
    g.conv2d(&flipped, 0, 1, 1, 1)
}

/// The gradient of a convolution's kernel `[out, in, k, k]` (candle's own backward): the input
/// convolved with the output gradient as kernel, dilated by the stride.
fn kernel_gradient(x: &Tensor, grad: &Tensor, k: usize, s: usize, p: usize) -> candle_core::Result<Tensor> {
    let g = x.transpose(0, 1)?.contiguous()?.conv2d(&grad.transpose(0, 1)?.contiguous()?, p, 1, s, 1)?;
    g.transpose(0, 1)?.narrow(2, 0, k)?.narrow(3, 0, k)?.contiguous()
}

/// `g [N, C, H, W]` with `s − 1` zeros between neighbouring rows and columns.
fn dilate(g: &Tensor, s: usize) -> candle_core::Result<Tensor> {
    if s == 1 {
        return Ok(g.clone());
    }
    let (n, c, h, w) = g.dims4()?;
    let zeros = Tensor::zeros((n, c, h, s - 1, w), g.dtype(), g.device())?;
    let rows = Tensor::cat(&[&g.unsqueeze(3)?, &zeros], 3)?.reshape((n, c, h * s, w))?.narrow(2, 0, s * (h - 1) + 1)?;
    let h = s * (h - 1) + 1;
    let zeros = Tensor::zeros((n, c, h, w, s - 1), g.dtype(), g.device())?;
    Tensor::cat(&[&rows.unsqueeze(4)?, &zeros], 4)?.reshape((n, c, h, w * s))?.narrow(3, 0, s * (w - 1) + 1)
}

/// `t` in reverse order along `dim`.
fn reverse(t: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = t.dim(dim)?;
    let order = Tensor::from_vec((0..n as u32).rev().collect::<Vec<_>>(), n, t.device())?;
    t.index_select(&order, dim)
}

/// `BatchNorm2d(c)`: `weight` (1) and `bias` (0) trained, `running_mean` (0) and `running_var`
/// (1) buffers ([`super::params::Group::Buffers`]), ε 1e-5, momentum 0.1.
pub(crate) struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm2d {
    pub(crate) fn new(s: &mut Scope, name: &str, channels: usize) -> Result<Self> {
        let mut s = s.sub(name);
        Ok(Self {
            weight: s.constant("weight", &[channels], 1.0)?,
            bias: s.constant("bias", &[channels], 0.0)?,
            running_mean: s.buffer("running_mean", &[channels], 0.0)?,
            running_var: s.buffer("running_var", &[channels], 1.0)?,
        })
    }

    /// `x [N, C, H, W]`. Training (`train`): normalised by the batch's statistics over N, H and W
    /// (biased variance), and the running statistics move towards them by the momentum, the
    /// variance unbiased (PyTorch's rule). Evaluation: normalised by the running statistics.
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        if !train {
            let scale = (&self.weight / (self.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            return Ok(x.broadcast_mul(&channel(&scale)?)?.broadcast_add(&channel(&shift)?)?);
        }
        let count = n * h * w;
        ensure!(count > 1, "BatchNorm in training needs more than one value per channel, got {:?}", x.dims());
        // Over each map first, then over the batch: one f32 sum over all N·H·W values of a
        // channel drifted by 1e-4 of the mean at 32 × 56 × 56 (PyTorch accumulates in f64 on
        // CPU), which moved the reference test's logits by 1e-3.
        let channel_mean =
            |t: &Tensor| -> candle_core::Result<Tensor> { t.sum_keepdim((2, 3))?.sum_keepdim(0)? / count as f64 };
        let mean = channel_mean(x)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = channel_mean(&centred.sqr()?)?;
        let y = centred
            .broadcast_div(&(&var + BN_EPS)?.sqrt()?)?
            .broadcast_mul(&channel(&self.weight)?)?
            .broadcast_add(&channel(&self.bias)?)?;
        let unbiased = (var.detach() * (count as f64 / (count - 1) as f64))?;
        for (running, batch) in [(&self.running_mean, mean.detach()), (&self.running_var, unbiased)] {
            let moved = ((running.as_tensor() * (1.0 - BN_MOMENTUM))? + (batch.flatten_all()? * BN_MOMENTUM)?)?;
            running.set(&moved)?;
        }
        Ok(y)
    }
}

/// `MaxPool2d(kernel_size=3, stride=2, padding=1)` on `[N, C, H, W]` (padding never wins: −∞).
pub(crate) fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    Ok(max_of_three_taps(&max_of_three_taps(x, 2)?, 3)?)
}

/// Along `dim` (length n): `y[o] = max(x[2o − 1], x[2o], x[2o + 1])`, o < ⌊(n − 1) / 2⌋ + 1,
/// the indices outside `x` left out.
fn max_of_three_taps(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(dim)?;
    let out = (n - 1) / 2 + 1;
    let edge = |len: usize| -> candle_core::Result<Tensor> {
        let mut shape = x.dims().to_vec();
        shape[dim] = len;
        Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())
    };
    // One row of −∞ before, and after enough for the last tap's stride-2 view.
    let padded = Tensor::cat(&[&edge(1)?, x, &edge(2 * out + 1 - n)?], dim)?;
    let mut split = x.dims().to_vec();
    split[dim] = out;
    split.insert(dim + 1, 2);
    let tap =
        |d: usize| padded.narrow(dim, d, 2 * out)?.reshape(split.clone())?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1);
    tap(0)?.maximum(&tap(1)?)?.maximum(&tap(2)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::params::{Group, ParamStore};

    /// Deterministic values in [−1, 1) without ties.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 10_007) as f32 / 10_007.0) * 2.0 - 1.0).collect()
    }

    fn tensor(shape: &[usize], seed: usize) -> Tensor {
        Tensor::from_vec(values(shape.iter().product(), seed), shape, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: worst difference {worst} (scale {scale})");
    }

    /// The custom op's forward and both gradients equal candle's own convolution and its
    /// backward, for the IAL network's kernels: 3×3 at strides 1 and 2 (even and odd sizes,
    /// where the forward's floor drops a row) and 1×1 at stride 2 (the downsampling shortcut).
    #[test]
    fn fast_backward_convolution_matches_candles_own() {
        for (k, s, p, size) in [(3, 1, 1, 6), (3, 2, 1, 8), (3, 2, 1, 7), (1, 2, 0, 8), (1, 2, 0, 7)] {
            let mut store = ParamStore::new(&Device::Cpu, 1);
            let conv = Conv2d::new(&mut store.scope("", Group::Head), "c", (3, 4), k, s, p).unwrap();
            let x = Var::from_tensor(&tensor(&[2, 3, size, size], 1)).unwrap();
            let y = conv.forward(x.as_tensor()).unwrap();
            let plain = x.as_tensor().conv2d(&conv.weight, p, s, 1, 1).unwrap();
            let what = format!("k {k} stride {s} size {size}");
            assert_close(&flat(&y), &flat(&plain), 1e-6, &format!("{what}: forward"));
            let r = tensor(y.dims(), 2);
            let fast = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let reference = (&plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, t) in [("input", x.as_tensor()), ("kernel", &conv.weight)] {
                let (a, b) = (fast.get(t).unwrap(), reference.get(t).unwrap());
                assert_eq!(a.dims(), b.dims(), "{what}: {name} gradient shape");
                assert_close(&flat(a), &flat(b), 1e-5, &format!("{what}: {name} gradient"));
            }
        }
    }

    /// A convolution is linear in its input and kernel: central differences of `Σ y·r` with a
    /// step of 1 are exact up to rounding, and match the custom op's gradients.
    #[test]
    fn convolution_gradients_match_finite_differences() {
        let mut store = ParamStore::new(&Device::Cpu, 2);
        let conv = Conv2d::new(&mut store.scope("", Group::Head), "c", (2, 3), 3, 2, 1).unwrap();
        let x = Var::from_tensor(&tensor(&[1, 2, 5, 5], 3)).unwrap();
        let r = tensor(&[1, 3, 3, 3], 4);
        let loss = |x: &Tensor, w: &Tensor| -> f32 {
            let y = x.conv2d(w, 1, 2, 1, 1).unwrap();
            (y * &r).unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        let grads = (conv.forward(x.as_tensor()).unwrap() * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let w = conv.weight.detach();
        for (which, base) in [("input", x.as_tensor().detach()), ("kernel", w.clone())] {
            let g = flat(grads.get(if which == "input" { x.as_tensor() } else { &conv.weight }).unwrap());
            let v = flat(&base);
            for i in (0..v.len()).step_by(5) {
                let bumped = |d: f32| {
                    let mut u = v.clone();
                    u[i] += d;
                    let t = Tensor::from_vec(u, base.dims(), &Device::Cpu).unwrap();
                    if which == "input" {
                        loss(&t, &w)
                    } else {
                        loss(&x.as_tensor().detach(), &t)
                    }
                };
                let numeric = (bumped(1.0) - bumped(-1.0)) / 2.0;
                assert!((numeric - g[i]).abs() < 1e-4, "{which} {i}: numeric {numeric}, analytic {}", g[i]);
            }
        }
    }

    /// The whole-map depthwise kernel as a weighted sum equals candle's grouped convolution.
    #[test]
    fn whole_map_depthwise_equals_a_grouped_convolution() {
        let mut store = ParamStore::new(&Device::Cpu, 4);
        let conv = Conv2d::new(&mut store.scope("", Group::Head), "gc", (1, 5), 3, 1, 0).unwrap();
        let x = tensor(&[2, 5, 3, 3], 8);
        let grouped = x.conv2d(&conv.weight, 0, 1, 1, 5).unwrap();
        let summed = conv.whole_map_depthwise(&x).unwrap();
        assert_eq!(summed.dims(), [2, 5, 1, 1]);
        assert_close(&flat(&summed), &flat(&grouped), 1e-6, "whole-map depthwise");
        assert!(conv.whole_map_depthwise(&tensor(&[2, 5, 4, 4], 9)).is_err(), "a map of another size is refused");
    }

    /// Max pooling against a direct loop over PyTorch's windows, and its gradient reaching each
    /// window's maximum only.
    #[test]
    fn max_pool_matches_pytorchs_windows_and_routes_the_gradient_to_the_maxima() {
        for size in [6usize, 7] {
            let x = Var::from_tensor(&tensor(&[2, 3, size, size], 5)).unwrap();
            let y = max_pool_3x3_s2(x.as_tensor()).unwrap();
            let out = (size - 1) / 2 + 1;
            assert_eq!(y.dims(), [2, 3, out, out]);
            let v = flat(x.as_tensor());
            let at = |plane: usize, r: i64, c: i64| -> Option<f32> {
                let inside = (0..size as i64).contains(&r) && (0..size as i64).contains(&c);
                inside.then(|| v[plane * size * size + r as usize * size + c as usize])
            };
            let mut want = Vec::new();
            let mut argmax = Vec::new();
            for plane in 0..6 {
                for i in 0..out as i64 {
                    for j in 0..out as i64 {
                        let mut best = (f32::NEG_INFINITY, 0);
                        for r in 2 * i - 1..=2 * i + 1 {
                            for c in 2 * j - 1..=2 * j + 1 {
                                if let Some(val) = at(plane, r, c) {
                                    if val > best.0 {
                                        best = (val, plane * size * size + r as usize * size + c as usize);
                                    }
                                }
                            }
                        }
                        want.push(best.0);
                        argmax.push(best.1);
                    }
                }
            }
            assert_eq!(flat(&y), want, "size {size}");
            let r = tensor(y.dims(), 6);
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut expect = vec![0f32; v.len()];
            for (o, &i) in argmax.iter().enumerate() {
                expect[i] += flat(&r)[o];
            }
            assert_close(&flat(grads.get(x.as_tensor()).unwrap()), &expect, 1e-6, "max-pool gradient");
        }
    }

    /// Training normalises by the batch's statistics and moves the running ones (momentum 0.1,
    /// unbiased variance); evaluation uses the running ones.
    #[test]
    fn batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones() {
        let mut store = ParamStore::new(&Device::Cpu, 0);
        let bn = BatchNorm2d::new(&mut store.scope("", Group::Head), "bn", 2).unwrap();
        store.get("bn.weight").unwrap().set(&Tensor::new(&[2f32, 0.5], &Device::Cpu).unwrap()).unwrap();
        store.get("bn.bias").unwrap().set(&Tensor::new(&[0.1f32, -1.0], &Device::Cpu).unwrap()).unwrap();
        let x = tensor(&[3, 2, 2, 2], 7);
        let v = flat(&x);
        let channel = |c: usize| -> Vec<f64> {
            let v = &v;
            (0..3).flat_map(|n| (0..4).map(move |i| v[n * 8 + c * 4 + i] as f64)).collect()
        };
        let y = flat(&bn.forward(&x, true).unwrap());
        let (w, b) = ([2.0, 0.5], [0.1, -1.0]);
        for c in 0..2 {
            let xs = channel(c);
            let mean = xs.iter().sum::<f64>() / 12.0;
            let var = xs.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / 12.0;
            for n in 0..3 {
                for i in 0..4 {
                    let want = (v[n * 8 + c * 4 + i] as f64 - mean) / (var + 1e-5).sqrt() * w[c] + b[c];
                    assert!((y[n * 8 + c * 4 + i] as f64 - want).abs() < 1e-5, "train, channel {c}");
                }
            }
            let rm = flat(store.get("bn.running_mean").unwrap().as_tensor())[c] as f64;
            let rv = flat(store.get("bn.running_var").unwrap().as_tensor())[c] as f64;
            assert!((rm - 0.1 * mean).abs() < 1e-6, "running mean, channel {c}");
            assert!((rv - (0.9 + 0.1 * var * 12.0 / 11.0)).abs() < 1e-6, "running variance, channel {c}");
            let e = flat(&bn.forward(&x, false).unwrap());
            for n in 0..3 {
                let want = (v[n * 8 + c * 4] as f64 - rm) / (rv + 1e-5).sqrt() * w[c] + b[c];
                assert!((e[n * 8 + c * 4] as f64 - want).abs() < 1e-5, "eval, channel {c}");
            }
        }
        assert_eq!(store.group(Group::Buffers).len(), 2, "running statistics are buffers");
        assert_eq!(store.group(Group::Head).len(), 2, "weight and bias are trained");
    }
}
