//! Bottleneck adapters in frozen CLIP towers, for FineCLIPER (`model.method = "fineclip"`;
//! docs/methods.md "FineCLIPER"). Per tower block, two adapters, each `FC-down → GELU → FC-up`:
//! one on the attention output before the residual add, with a skip (`a + up(GELU(down(a)))`),
//! and one beside the MLP on the MLP's input, scaled by `s` (`x + MLP(h) + s · up(GELU(down(h)))`,
//! h the normed input). FineCLIPER's figure gives the places, the form and s = 0.5; the
//! bottleneck width (a ratio of the tower's width) and the initialisation are ours (AIM's: the
//! up-projections start at zero, so an untrained adapter leaves the tower's output unchanged).

use anyhow::Result;
use candle_core::{Module, Tensor};

use super::layers::{Bias, Linear};
use super::params::Scope;

/// `FC-down → GELU → FC-up` (`{name}.down`, `{name}.up`), the up-projection zero-initialised.
struct Bottleneck {
    down: Linear,
    up: Linear,
}

impl Bottleneck {
    fn new(s: &mut Scope, name: &str, width: usize, hidden: usize) -> Result<Self> {
        let mut s = s.sub(name);
        let down = Linear::torch_default(&mut s, "down", width, hidden, Bias::With)?;
        let up = Linear::new(&mut s, "up", hidden, width, Bias::With, 0.0)?;
        Ok(Self { down, up })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.up.forward(&self.down.forward(x)?.gelu_erf()?)?)
    }
}

/// The two adapters of one tower block (`{i}.attn`, `{i}.mlp`).
pub(crate) struct BlockAdapter {
    attn: Bottleneck,
    mlp: Bottleneck,
    scale: f64,
}

impl BlockAdapter {
    /// The attention output `a` through the serial adapter with its skip.
    pub(crate) fn after_attention(&self, a: &Tensor) -> Result<Tensor> {
        Ok((a + self.attn.forward(a)?)?)
    }

    /// What the parallel adapter adds beside the MLP, from the MLP's input `h`.
    pub(crate) fn beside_mlp(&self, h: &Tensor) -> Result<Tensor> {
        Ok((self.mlp.forward(h)? * self.scale)?)
    }
}

/// One adapter pair per block of a tower of `layers` blocks of `width` channels.
pub(crate) struct TowerAdapters {
    blocks: Vec<BlockAdapter>,
}

impl TowerAdapters {
    /// `ratio`: the bottleneck width as a share of `width`; `scale`: the parallel adapter's s.
    pub(crate) fn new(s: &mut Scope, layers: usize, width: usize, ratio: f64, scale: f64) -> Result<Self> {
        let hidden = ((width as f64 * ratio).round() as usize).max(1);
        let blocks = (0..layers)
            .map(|i| {
                let mut b = s.sub(&i.to_string());
                let attn = Bottleneck::new(&mut b, "attn", width, hidden)?;
                let mlp = Bottleneck::new(&mut b, "mlp", width, hidden)?;
                Ok(BlockAdapter { attn, mlp, scale })
            })
            .collect::<Result<_>>()?;
        Ok(Self { blocks })
    }

    /// The adapter of block `i`.
    pub(crate) fn block(&self, i: usize) -> Option<&BlockAdapter> {
        self.blocks.get(i)
    }
}
