//! The optimiser: AdamW (Loshchilov & Hutter) or SGD with momentum, each with PyTorch's update
//! rule, parameter groups, global-norm gradient clipping, and state saved with each checkpoint
//! (candle's own AdamW keeps its moments private and has no groups); and the learning-rate
//! schedules: warmup + cosine, or warmup + steps at milestones (PyTorch's MultiStepLR).

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use super::params::{Group, ParamStore};

#[derive(Clone, Debug)]
pub(crate) struct GroupSettings {
    pub group: Group,
    pub lr: f64,
    pub weight_decay: f64,
}

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    /// PyTorch's AdamW (β = 0.9, 0.999, ε = 1e-8), weight decay decoupled from the gradient.
    AdamW,
    /// PyTorch's SGD: weight decay added to the gradient, then the momentum buffer
    /// `b ← μ b + g` (no dampening, no Nesterov) and `p ← p − lr b`.
    Sgd { momentum: f64 },
}

struct Slot {
    name: String,
    var: Var,
    group: usize,
    /// AdamW's first moment, or SGD's momentum buffer.
    m: Tensor,
    /// AdamW's second moment (unused by SGD).
    v: Tensor,
}

pub(crate) struct Optimizer {
    rule: Rule,
    slots: Vec<Slot>,
    groups: Vec<GroupSettings>,
    step: u64,
    device: Device,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

impl Optimizer {
    /// Optimises the parameters of the listed groups with `rule`; the others stay frozen.
    pub(crate) fn new(store: &ParamStore, groups: Vec<GroupSettings>, rule: Rule) -> Result<Self> {
        let mut slots = Vec::new();
        for (gi, g) in groups.iter().enumerate() {
            for (name, var) in store.group(g.group) {
                let m = var.as_tensor().zeros_like()?;
                slots.push(Slot { name, var, group: gi, v: m.clone(), m });
            }
        }
        Ok(Self { rule, slots, groups, step: 0, device: store.device().clone() })
    }

    pub(crate) fn step_count(&self) -> u64 {
        self.step
    }

    /// Names of the parameters being optimised.
    pub(crate) fn trained(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// Global L2 norm of the gradients of the optimised parameters: an f32 scalar on the device
    /// (no read-back).
    pub(crate) fn grad_norm(&self, grads: &GradStore) -> Result<Tensor> {
        let mut squares = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                squares.push(g.to_dtype(DType::F32)?.sqr()?.sum_all()?);
            }
        }
        match squares.first() {
            None => Ok(Tensor::zeros((), DType::F32, &self.device)?),
            Some(_) => Ok(Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?),
        }
    }

    /// One update with every group's rate multiplied by `lr_factor`, after clipping the global
    /// gradient norm (`norm`, from [`Optimizer::grad_norm`]) to `max_norm` (if given). Nothing is read
    /// back: the caller reads the norm with the step's losses and refuses a non-finite one.
    pub(crate) fn step(
        &mut self,
        grads: &GradStore,
        norm: &Tensor,
        lr_factor: f64,
        max_norm: Option<f64>,
    ) -> Result<()> {
        // min(1, max / (norm + 1e-6)): PyTorch's clip_grad_norm_ factor, computed on the device.
        let clip = match max_norm {
            Some(m) => Some(((norm + 1e-6)?.recip()? * m)?.minimum(1f64)?),
            None => None,
        };
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else { continue };
            // Gradients and parameters untracked: candle's gradients are built from the forward's
            // tensors, and a state tensor made from tracked ones would hold that step's graph,
            // and through the previous state every earlier step's, alive (with SGD on IAL's
            // network, 4 GB more per epoch).
            let g = g.detach();
            let g = match &clip {
                Some(c) => g.broadcast_mul(&c.detach().to_dtype(g.dtype())?)?,
                None => g,
            };
            let gs = &self.groups[s.group];
            let lr = gs.lr * lr_factor;
            let p = s.var.as_tensor().detach();
            let p = &p;
            let next = match self.rule {
                Rule::AdamW => {
                    s.m = ((&s.m * BETA1)? + (&g * (1.0 - BETA1))?)?;
                    s.v = ((&s.v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let update = ((&s.m / c1)? / ((&s.v / c2)?.sqrt()? + EPS)?)?;
                    ((p * (1.0 - lr * gs.weight_decay))? - (update * lr)?)?
                }
                Rule::Sgd { momentum } => {
                    let g = (g + (p * gs.weight_decay)?)?;
                    s.m = ((&s.m * momentum)? + g)?;
                    (p - (&s.m * lr)?)?
                }
            };
            s.var.set(&next)?;
        }
        Ok(())
    }

    /// The state tensors the rule keeps: AdamW's `m` and `v`, SGD's momentum buffer `m`.
    fn kept(&self) -> &'static [&'static str] {
        match self.rule {
            Rule::AdamW => &["m", "v"],
            Rule::Sgd { .. } => &["m"],
        }
    }

    /// State by `m.<name>` (and `v.<name>` for AdamW); the step count is kept by the caller's
    /// training state.
    pub(crate) fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        let kept = self.kept();
        for s in &self.slots {
            for (key, t) in [("m", &s.m), ("v", &s.v)] {
                if kept.contains(&key) {
                    out.insert(format!("{key}.{}", s.name), t.clone());
                }
            }
        }
        out
    }

    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>, step: u64, what: &str) -> Result<()> {
        let kept = self.kept();
        for s in &mut self.slots {
            for (key, slot) in [("m", &mut s.m), ("v", &mut s.v)] {
                if !kept.contains(&key) {
                    continue;
                }
                let name = format!("{key}.{}", s.name);
                let t = state.get(&name).with_context(|| format!("{what}: optimizer state has no {name}"))?;
                ensure!(t.dims() == slot.dims(), "{what}: {name} has shape {:?}", t.dims());
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// How the learning rate moves after the warmup.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decay {
    /// Cosine from 1 to `floor` at the last step.
    Cosine { floor: f64 },
    /// Times `gamma` at each of the `milestones` (steps), as PyTorch's MultiStepLR.
    Steps { milestones: Vec<u64>, gamma: f64 },
}

/// Learning-rate factor at `step`: linear warmup over `warmup` steps, then `decay` (`total` steps
/// in all).
pub(crate) fn schedule(step: u64, warmup: u64, total: u64, decay: &Decay) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    match decay {
        Decay::Cosine { floor } => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let progress = ((step - warmup) as f64 / span).min(1.0);
            floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        Decay::Steps { milestones, gamma } => gamma.powi(milestones.iter().filter(|&&m| step >= m).count() as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const GROUP: [GroupSettings; 1] = [GroupSettings { group: Group::Head, lr: 0.1, weight_decay: 0.01 }];

    /// Two steps of `rule` (lr 0.1, weight decay 0.01) on loss = p², p0 = 1: the optimiser, its
    /// store and p after each step.
    fn two_steps_on_p_squared(rule: Rule) -> (Optimizer, ParamStore, Vec<f32>) {
        let mut store = ParamStore::new(&Device::Cpu, 0);
        store.scope("", Group::Head).constant("p", &[1], 1.0).unwrap();
        let mut opt = Optimizer::new(&store, GROUP.to_vec(), rule).unwrap();
        let p = store.get("p").unwrap().clone();
        let mut values = vec![];
        for _ in 0..2 {
            let grads = p.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
            opt.step(&grads, &opt.grad_norm(&grads).unwrap(), 1.0, None).unwrap();
            values.push(p.as_tensor().to_vec1::<f32>().unwrap()[0]);
        }
        (opt, store, values)
    }

    #[test]
    fn matches_pytorch_adamw_on_a_scalar() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01) on loss = p², p0 = 1: two steps give
        // p1 = 0.899, p2 = 0.798519 (worked by hand from the update rule below).
        let (opt, _, values) = two_steps_on_p_squared(Rule::AdamW);
        // Step 1: m̂/√v̂ = 1, p = 1·0.999 − 0.1 = 0.899. Step 2: g = 1.798, m = 0.3598,
        // v = 0.0072288, m̂ = 1.89368, √v̂ = 1.90163, p = 0.899·0.999 − 0.1·0.99582 = 0.798519.
        assert!((values[0] - 0.899).abs() < 1e-5, "{values:?}");
        assert!((values[1] - 0.798519).abs() < 1e-5, "{values:?}");
        assert_eq!(opt.step_count(), 2);
        assert!(opt.state().values().all(|t| !t.track_op()), "AdamW's moments hold no graph");
    }

    #[test]
    fn clipping_state_round_trip_and_schedule() {
        let mut store = ParamStore::new(&Device::Cpu, 0);
        store.scope("", Group::Head).constant("w", &[2], 3.0).unwrap();
        store.scope("", Group::TextEncoder).constant("frozen", &[2], 3.0).unwrap();
        let groups = vec![GroupSettings { group: Group::Head, lr: 0.01, weight_decay: 0.0 }];
        let mut opt = Optimizer::new(&store, groups.clone(), Rule::AdamW).unwrap();
        assert_eq!(opt.trained().count(), 1, "frozen groups are left out");
        let w = store.get("w").unwrap().clone();
        let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 100.0).unwrap();
        let grads = loss.backward().unwrap();
        let norm = opt.grad_norm(&grads).unwrap();
        opt.step(&grads, &norm, 1.0, Some(1.0)).unwrap();
        let norm = norm.to_scalar::<f32>().unwrap() as f64;
        assert!((norm - (2.0f64 * 600.0 * 600.0).sqrt()).abs() < 1e-3, "{norm}");
        // Clipped to norm 1: the first Adam step moves each weight by lr whatever the gradient's
        // size, so check the clipped gradient through the first moment instead: m = 0.1 · g / |g|.
        let m = opt.state()["m.w"].to_vec1::<f32>().unwrap();
        assert!(m.iter().all(|v| (v - 0.1 / 2f32.sqrt()).abs() < 1e-5), "{m:?}");
        let mut other = Optimizer::new(&store, groups, Rule::AdamW).unwrap();
        other.load_state(&opt.state(), opt.step_count(), "test").unwrap();
        assert_eq!(other.step_count(), 1);
        assert_eq!(other.state()["m.w"].to_vec1::<f32>().unwrap(), opt.state()["m.w"].to_vec1::<f32>().unwrap());
        assert!(other.load_state(&HashMap::new(), 0, "ckpt.safetensors").unwrap_err().to_string().contains("m.w"));
        let cos = |floor| Decay::Cosine { floor };
        assert!((schedule(0, 10, 100, &cos(0.0)) - 0.1).abs() < 1e-12);
        assert!((schedule(10, 10, 100, &cos(0.0)) - 1.0).abs() < 1e-12);
        assert!((schedule(100, 10, 100, &cos(0.1)) - 0.1).abs() < 1e-12);
        assert!((schedule(55, 10, 100, &cos(0.0)) - 0.5).abs() < 1e-12);
        let steps = Decay::Steps { milestones: vec![30, 40], gamma: 0.1 };
        let f: Vec<f64> = [0, 29, 30, 39, 40, 49].iter().map(|&s| schedule(s, 0, 50, &steps)).collect();
        assert_eq!(f.iter().map(|x| (x * 1e6).round() / 1e6).collect::<Vec<_>>(), [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]);
    }

    /// torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01) on loss = p², p0 = 1:
    /// g1 = 2 + 0.01 = 2.01, b1 = 2.01, p1 = 0.799; g2 = 1.598 + 0.00799 = 1.60599,
    /// b2 = 0.9·2.01 + 1.60599 = 3.41499, p2 = 0.799 − 0.341499 = 0.457501. Only the momentum
    /// buffer is saved, it restores, and it holds no graph.
    #[test]
    fn sgd_matches_pytorch_on_a_scalar_and_keeps_its_momentum() {
        let (opt, store, values) = two_steps_on_p_squared(Rule::Sgd { momentum: 0.9 });
        assert!((values[0] - 0.799).abs() < 1e-6, "{values:?}");
        assert!((values[1] - 0.457501).abs() < 1e-6, "{values:?}");
        let state = opt.state();
        assert_eq!(state.keys().collect::<Vec<_>>(), ["m.p"]);
        assert!((state["m.p"].to_vec1::<f32>().unwrap()[0] - 3.41499).abs() < 1e-5);
        // The buffer holds no graph: a tracked one kept every step's graph alive (a leak).
        assert!(!state["m.p"].track_op(), "the momentum buffer is a plain tensor");
        let mut other = Optimizer::new(&store, GROUP.to_vec(), Rule::Sgd { momentum: 0.9 }).unwrap();
        other.load_state(&state, 2, "test").unwrap();
        assert_eq!(other.state()["m.p"].to_vec1::<f32>().unwrap(), state["m.p"].to_vec1::<f32>().unwrap());
    }
}
