//! Generic building blocks with PyTorch parameter names: linear, LayerNorm, CLIP's quick-GELU,
//! a temporal convolution and an LSTM (PyTorch gate order i, f, g, o). CLIP's own attention and
//! encoder layer live in `clip.rs`. Matmuls run on 2-D views (`[rows, in] × [in, out]`): a
//! batched matmul against a shared weight would make candle's backward build one weight gradient
//! per batch item. Where no gradient can flow (frozen towers, evaluation) LayerNorm and softmax
//! use candle's fused kernels, which have no backward; elsewhere they are written with
//! differentiable primitives. Softmax and LayerNorm statistics are computed in f32 whatever the
//! tower's dtype.

use anyhow::Result;
use candle_core::{CpuStorage, DType, Device, Layout, Module, Shape, Tensor, D};
use candle_nn::ops::{sigmoid, softmax};

use super::params::Scope;

pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// Whether a [`Linear`] layer adds a bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bias {
    With,
    Without,
}

impl Linear {
    /// `weight [out, in]` ~ N(0, std²), zero bias (CLIP's initialisation).
    pub(crate) fn new(s: &mut Scope, name: &str, input: usize, output: usize, bias: Bias, std: f64) -> Result<Self> {
        let mut s = s.sub(name);
        let weight = s.normal("weight", &[output, input], std)?;
        let bias = if bias == Bias::With { Some(s.constant("bias", &[output], 0.0)?) } else { None };
        Ok(Self { weight, bias })
    }
}

impl Linear {
    /// PyTorch's default `nn.Linear` initialisation: weight and bias ~ U(−1/√in, 1/√in).
    pub(crate) fn torch_default(s: &mut Scope, name: &str, input: usize, output: usize, bias: Bias) -> Result<Self> {
        let mut s = s.sub(name);
        let bound = (input as f64).powf(-0.5);
        let weight = s.uniform("weight", &[output, input], bound)?;
        let bias = if bias == Bias::With { Some(s.uniform("bias", &[output], bound)?) } else { None };
        Ok(Self { weight, bias })
    }

    /// The same layer on untracked copies of its weights in `dtype`: no graph is built. In the
    /// weights' own dtype the copies share their storage (they follow updates); in another
    /// they are cast here, once, instead of at every forward.
    pub(crate) fn detached(&self, dtype: DType) -> candle_core::Result<Self> {
        Ok(Self {
            weight: self.weight.detach().to_dtype(dtype)?,
            bias: self.bias.as_ref().map(|b| b.detach().to_dtype(dtype)).transpose()?,
        })
    }

    /// The weight's dtype.
    #[cfg(test)]
    pub(crate) fn dtype(&self) -> DType {
        self.weight.dtype()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.weight.to_dtype(x.dtype())?;
        let b = self.bias.as_ref().map(|b| b.to_dtype(x.dtype())).transpose()?;
        if x.track_op() && untracked(&[&w]) && b.as_ref().is_none_or(|b| !b.track_op()) && x.device().is_cpu() {
            return x.contiguous()?.apply_op1(FrozenLinear { w_t: w.t()?, bias: b });
        }
        let y = matmul_rows(x, &w.t()?)?;
        match &b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x × w_t + bias` with weights that take no gradient, as one op whose backward computes only
/// the input's gradient. candle's own matmul backward also computes the gradient of its right
/// side whether or not anything wants it, which doubled the cost of the frozen text tower's
/// backward (the prompt pass, where the gradient flows through frozen weights to the context
/// vectors). CPU only (the forward runs candle's own ops on a copy of the input); on CUDA the
/// plain ops run.
struct FrozenLinear {
    /// `[in, out]`.
    w_t: Tensor,
    bias: Option<Tensor>,
}

impl FrozenLinear {
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = matmul_rows(x, &self.w_t)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_output(&self.apply(&cpu_input(storage, layout, "frozen-linear")?)?, "frozen-linear")
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(matmul_rows(grad, &self.w_t.t()?)?))
    }
}

/// A custom op's contiguous f32 CPU input as a tensor of its own (a copy), so the op's forward
/// can run candle's own operations on it.
pub(crate) fn cpu_input(storage: &CpuStorage, layout: &Layout, op: &'static str) -> candle_core::Result<Tensor> {
    let (start, end) = layout.contiguous_offsets().ok_or(candle_core::Error::RequiresContiguous { op })?;
    match storage {
        CpuStorage::F32(v) => Tensor::from_slice(&v[start..end], layout.shape(), &Device::Cpu),
        other => Err(candle_core::Error::UnsupportedDTypeForOp(candle_core::backend::BackendStorage::dtype(other), op)),
    }
}

/// A CPU tensor computed in a custom op's forward, as the op's output storage (a copy).
pub(crate) fn cpu_output(y: &Tensor, op: &'static str) -> candle_core::Result<(CpuStorage, Shape)> {
    if !y.device().is_cpu() || y.dtype() != DType::F32 {
        return Err(candle_core::Error::Msg(format!("{op}: expected an f32 CPU output")));
    }
    Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), y.shape().clone()))
}

/// `x [..., in] × w [in, out]` as one 2-D matmul over all leading dimensions → `[..., out]`.
pub(crate) fn matmul_rows(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let input = dims.pop().unwrap_or(1);
    let y = x.reshape(((), input))?.matmul(w)?;
    dims.push(w.dim(1)?);
    y.reshape(dims)
}

/// True when nothing in `tensors` records a graph: no gradient can be asked through an op on them.
fn untracked(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| !t.track_op())
}

/// Softmax over the last dimension, in f32, returned in `x`'s dtype.
pub(crate) fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let x32 = x.to_dtype(DType::F32)?;
    let y =
        if untracked(&[x]) { candle_nn::ops::softmax_last_dim(&x32.contiguous()?)? } else { softmax(&x32, D::Minus1)? };
    y.to_dtype(x.dtype())
}

/// LayerNorm over the last dimension, written with differentiable primitives; statistics in f32.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(s: &mut Scope, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let mut s = s.sub(name);
        Ok(Self { weight: s.constant("weight", &[dim], 1.0)?, bias: s.constant("bias", &[dim], 0.0)?, eps })
    }
}

impl LayerNorm {
    pub(crate) fn detached(&self) -> Self {
        Self { weight: self.weight.detach(), bias: self.bias.detach(), eps: self.eps }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        if untracked(&[&x, &self.weight, &self.bias]) {
            let (w, b) = (self.weight.to_dtype(DType::F32)?, self.bias.to_dtype(DType::F32)?);
            return candle_nn::ops::layer_norm(&x.contiguous()?, &w, &b, self.eps as f32)?.to_dtype(dtype);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?.to_dtype(dtype)
    }
}

/// CLIP's activation: `x · σ(1.702 x)`.
pub(crate) fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    Ok((x * sigmoid(&(x * 1.702)?)?)?)
}

/// 1-D convolution over time with "same" zero padding, `weight [out, in, k]` (PyTorch's Conv1d
/// layout), on `[B, T, in]` → `[B, T, out]`. Written as shifted matmuls: candle's conv1d backward
/// underflows on short padded sequences.
pub(crate) struct TemporalConv {
    taps: Vec<Tensor>,
    bias: Tensor,
}

impl TemporalConv {
    pub(crate) fn new(s: &mut Scope, name: &str, input: usize, output: usize, k: usize) -> Result<Self> {
        anyhow::ensure!(k % 2 == 1, "temporal kernel size must be odd");
        let mut s = s.sub(name);
        let weight = s.normal("weight", &[output, input, k], (input as f64 * k as f64).powf(-0.5))?;
        let bias = s.constant("bias", &[output], 0.0)?;
        let taps = (0..k).map(|j| weight.narrow(2, j, 1)?.squeeze(2)?.t()).collect::<candle_core::Result<_>>()?;
        Ok(Self { taps, bias })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let half = self.taps.len() / 2;
        let pad = Tensor::zeros((b, half, c), x.dtype(), x.device())?;
        let padded = Tensor::cat(&[&pad, x, &pad], 1)?;
        let mut y = matmul_rows(&padded.narrow(1, 0, t)?, &self.taps[0])?;
        for (j, tap) in self.taps.iter().enumerate().skip(1) {
            y = (y + matmul_rows(&padded.narrow(1, j, t)?, tap)?)?;
        }
        Ok(y.broadcast_add(&self.bias)?)
    }
}

/// Single-layer LSTM over `[B, T, in]`, returning every hidden state `[B, T, hidden]`.
pub(crate) struct Lstm {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl Lstm {
    pub(crate) fn new(s: &mut Scope, name: &str, input: usize, hidden: usize) -> Result<Self> {
        let mut s = s.sub(name);
        let k = (hidden as f64).powf(-0.5);
        Ok(Self {
            w_ih: s.uniform("weight_ih_l0", &[4 * hidden, input], k)?,
            w_hh: s.uniform("weight_hh_l0", &[4 * hidden, hidden], k)?,
            b_ih: s.uniform("bias_ih_l0", &[4 * hidden], k)?,
            b_hh: s.uniform("bias_hh_l0", &[4 * hidden], k)?,
            hidden,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let dt = x.dtype();
        let bias = (&self.b_ih + &self.b_hh)?.to_dtype(dt)?;
        let projected = matmul_rows(x, &self.w_ih.to_dtype(dt)?.t()?)?.broadcast_add(&bias)?;
        let w_hh = self.w_hh.to_dtype(dt)?.t()?;
        let mut h = Tensor::zeros((b, self.hidden), dt, x.device())?;
        let mut c = h.clone();
        let mut out = Vec::with_capacity(t);
        for step in 0..t {
            let gates = (projected.narrow(1, step, 1)?.squeeze(1)? + h.matmul(&w_hh)?)?;
            let chunk = |i: usize| gates.narrow(1, i * self.hidden, self.hidden);
            let (i, f, g, o) = (sigmoid(&chunk(0)?)?, sigmoid(&chunk(1)?)?, chunk(2)?.tanh()?, sigmoid(&chunk(3)?)?);
            c = ((f * c)? + (i * g)?)?;
            h = (o * c.tanh()?)?;
            out.push(h.clone());
        }
        Ok(Tensor::stack(&out, 1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::{Group, ParamStore};

    /// A frozen layer on a tracked input (the text tower under the prompt gradient) takes the
    /// one-op path; its output and input gradient equal the plain ops' (a trained copy of the
    /// same weights), and its weights receive no gradient.
    #[test]
    fn frozen_linear_matches_the_plain_ops_and_gives_only_the_input_gradient() {
        let mut p = ParamStore::new(&Device::Cpu, 3);
        let trained = Linear::new(&mut p.scope("", Group::Head), "fc", 5, 3, Bias::With, 0.5).unwrap();
        p.get("fc.bias").unwrap().set(&Tensor::new(&[0.1f32, -0.2, 0.3], &Device::Cpu).unwrap()).unwrap();
        let frozen = trained.detached(DType::F32).unwrap();
        let x = candle_core::Var::new(&[[[1f32, 2., 3., 4., 5.], [0., -1., 0.5, 2., 1.]]], &Device::Cpu).unwrap();
        let grad_of = |layer: &Linear| {
            let y = layer.forward(x.as_tensor()).unwrap();
            let weights = Tensor::new(&[[[1f32, -2., 0.5], [3., 1., -1.]]], &Device::Cpu).unwrap();
            let grads = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            (y.to_vec3::<f32>().unwrap(), grads.get(x.as_tensor()).unwrap().to_vec3::<f32>().unwrap(), grads)
        };
        let (y_plain, gx_plain, _) = grad_of(&trained);
        let (y_frozen, gx_frozen, grads) = grad_of(&frozen);
        assert_eq!(y_frozen, y_plain);
        assert_eq!(gx_frozen, gx_plain);
        assert!(grads.get(&frozen.weight).is_none() && grads.get(frozen.bias.as_ref().unwrap()).is_none());
    }

    #[test]
    fn layer_norm_normalises_and_passes_gradients() {
        let mut p = ParamStore::new(&Device::Cpu, 0);
        let ln = LayerNorm::new(&mut p.scope("", Group::Head), "ln", 4, 1e-5).unwrap();
        let x = candle_core::Var::new(&[[1f32, 2., 3., 6.], [0., 0., 1., -1.]], &Device::Cpu).unwrap();
        let y = ln.forward(x.as_tensor()).unwrap();
        let rows: Vec<Vec<f32>> = y.to_vec2().unwrap();
        for r in &rows {
            let mean: f32 = r.iter().sum::<f32>() / 4.0;
            let var: f32 = r.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{r:?}");
        }
        let loss = (y * Tensor::new(&[[1f32, 0., 0., 2.], [0., 3., 0., 0.]], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        for name in ["ln.weight", "ln.bias"] {
            let g = grads.get(p.get(name).unwrap().as_tensor()).expect(name);
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}");
        }
        assert!(grads.get(x.as_tensor()).is_some(), "gradient reaches the input");
    }

    #[test]
    fn temporal_conv_matches_a_hand_computed_output() {
        let mut p = ParamStore::new(&Device::Cpu, 0);
        let conv = TemporalConv::new(&mut p.scope("", Group::Head), "conv", 1, 1, 3).unwrap();
        let w = Tensor::new(&[[[1f32, 2., 3.]]], &Device::Cpu).unwrap();
        p.get("conv.weight").unwrap().set(&w).unwrap();
        let conv = TemporalConv {
            taps: conv
                .taps
                .iter()
                .enumerate()
                .map(|(j, _)| w.narrow(2, j, 1).unwrap().squeeze(2).unwrap().t().unwrap())
                .collect(),
            bias: conv.bias,
        };
        let x = Tensor::new(&[[[1f32], [10.], [100.]]], &Device::Cpu).unwrap();
        let y: Vec<f32> = conv.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // PyTorch Conv1d(padding=1) is a cross-correlation: y[t] = w0·x[t−1] + w1·x[t] + w2·x[t+1].
        assert_eq!(y, vec![2. + 30., 1. + 20. + 300., 10. + 200.]);
    }

    #[test]
    fn lstm_matches_a_hand_computed_step() {
        let mut p = ParamStore::new(&Device::Cpu, 0);
        let lstm = Lstm::new(&mut p.scope("", Group::Head), "lstm", 1, 1).unwrap();
        for (name, v) in [("weight_ih_l0", 0.5f32), ("weight_hh_l0", 0.25), ("bias_ih_l0", 0.1), ("bias_hh_l0", 0.0)] {
            p.get(&format!("lstm.{name}"))
                .unwrap()
                .set(
                    &Tensor::new(&[v; 4], &Device::Cpu)
                        .unwrap()
                        .reshape(if name.starts_with("bias") { vec![4] } else { vec![4, 1] })
                        .unwrap(),
                )
                .unwrap();
        }
        let x = Tensor::new(&[[[1f32], [2.]]], &Device::Cpu).unwrap();
        let y: Vec<f32> = lstm.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let s = |v: f32| 1.0 / (1.0 + (-v).exp());
        let (mut h, mut c) = (0f32, 0f32);
        let mut want = vec![];
        for xt in [1f32, 2.] {
            let z = 0.5 * xt + 0.25 * h + 0.1;
            c = s(z) * c + s(z) * z.tanh();
            h = s(z) * c.tanh();
            want.push(h);
        }
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
    }
}
