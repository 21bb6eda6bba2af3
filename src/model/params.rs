//! Named trainable parameters: seeded initialisation (candle cannot seed its CPU generator),
//! parameter groups for the optimiser, and safetensors save / load by name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::UsageError;

/// Which optimiser group a parameter belongs to (each group has its own learning rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Group {
    /// The CLIP image tower (frozen by default, fine-tuned at a small rate on request).
    ImageEncoder,
    /// The CLIP text tower (always frozen: CoOp trains only the prompt context).
    TextEncoder,
    /// Learnable prompt context vectors.
    Prompts,
    /// Everything a method adds on top of CLIP (OUS, DFER-CLIP), or a whole network without
    /// CLIP towers (IAL).
    Head,
    /// State that is not trained but changes in training and is saved with every checkpoint:
    /// BatchNorm running statistics.
    Buffers,
}

/// All parameters of a model, by full name (Hugging Face names for the CLIP towers).
pub(crate) struct ParamStore {
    device: Device,
    rng: ChaCha8Rng,
    vars: BTreeMap<String, (Var, Group)>,
}

impl ParamStore {
    pub(crate) fn new(device: &Device, seed: u64) -> Self {
        Self { device: device.clone(), rng: ChaCha8Rng::seed_from_u64(seed), vars: BTreeMap::new() }
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The parameter named `name` (tests set and read single parameters).
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name).map(|(v, _)| v)
    }

    /// A view that prefixes names with `prefix.` and files new parameters under `group`.
    pub(crate) fn scope(&mut self, prefix: &str, group: Group) -> Scope<'_> {
        Scope { store: self, prefix: prefix.to_string(), group }
    }

    /// `(name, var)` pairs of one group, in name order.
    pub(crate) fn group(&self, group: Group) -> Vec<(String, Var)> {
        self.vars.iter().filter(|(_, (_, g))| *g == group).map(|(n, (v, _))| (n.clone(), v.clone())).collect()
    }

    pub(crate) fn num_elements(&self, group: Group) -> usize {
        self.vars.values().filter(|(_, g)| *g == group).map(|(v, _)| v.elem_count()).sum()
    }

    fn insert(&mut self, name: String, group: Group, values: Vec<f32>, shape: &[usize]) -> Result<Var> {
        if self.vars.contains_key(&name) {
            bail!("parameter {name} defined twice");
        }
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(&self.device)?)?;
        self.vars.insert(name, (var.clone(), group));
        Ok(var)
    }

    /// Writes the parameters of `groups` to a safetensors file.
    pub(crate) fn save_groups(&self, path: &Path, groups: &[Group]) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .vars
            .iter()
            .filter(|(_, (_, g))| groups.contains(g))
            .map(|(n, (v, _))| (n.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&tensors, path).with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Sets the parameters of `required` groups from `file`, which must hold each of them, and
    /// those of an `optional` group when the file holds any of its tensors (then all of them);
    /// other tensors in the file are ignored. Returns whether the optional group was set.
    pub(crate) fn load_groups(&mut self, path: &Path, required: &[Group], optional: Group) -> Result<bool> {
        let stored = candle_core::safetensors::load(path, &self.device)
            .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
        let has_optional = self.vars.iter().any(|(n, (_, g))| *g == optional && stored.contains_key(n));
        let mut pairs = Vec::new();
        for (name, (var, group)) in &self.vars {
            if required.contains(group) || (has_optional && *group == optional) {
                let t = stored.get(name).with_context(|| format!("{}: has no tensor {name}", path.display()))?;
                pairs.push((name, var, t));
            }
        }
        // Every tensor is found before any parameter changes.
        for (name, var, t) in pairs {
            set_checked(var, t, name, path)?;
        }
        Ok(has_optional)
    }

    /// Sets the parameters whose names start with `prefix` from a file that names them without it
    /// (CLIP weights in the Hugging Face layout); returns how many were set. Extra tensors in the
    /// file (e.g. `position_ids` buffers) are ignored; missing or mis-shaped ones are refused all
    /// together, before any parameter changes, naming the first few.
    pub(crate) fn load_prefixed(&mut self, path: &Path, prefix: &str) -> Result<usize> {
        let stored = candle_core::safetensors::load(path, &self.device)
            .with_context(|| format!("{}: not a readable safetensors file", path.display()))?;
        let wanted: Vec<(&str, &Var)> =
            self.vars.iter().filter_map(|(name, (var, _))| Some((name.strip_prefix(prefix)?, var))).collect();
        let problems: Vec<String> = wanted
            .iter()
            .filter_map(|(short, var)| match stored.get(*short) {
                None => Some(format!("{short} is missing")),
                Some(t) if t.dims() != var.dims() => Some(format!("{short} is {:?}, not {:?}", t.dims(), var.dims())),
                Some(_) => None,
            })
            .collect();
        if !problems.is_empty() {
            let first: Vec<&str> = problems.iter().take(4).map(String::as_str).collect();
            bail!(UsageError::new(format!(
                "{}: {} of the model's {} CLIP tensors do not fit ({}{}); are these CLIP weights of this model.arch?",
                path.display(),
                problems.len(),
                wanted.len(),
                first.join("; "),
                if problems.len() > first.len() { "; …" } else { "" }
            )));
        }
        for (short, var) in &wanted {
            set_checked(var, &stored[*short], short, path)?;
        }
        Ok(wanted.len())
    }
}

fn set_checked(var: &Var, t: &Tensor, name: &str, path: &Path) -> Result<()> {
    if t.dims() != var.dims() {
        bail!("{}: tensor {name} has shape {:?}, the model expects {:?}", path.display(), t.dims(), var.dims());
    }
    var.set(&t.to_dtype(DType::F32)?)?;
    Ok(())
}

/// A named corner of a [`ParamStore`].
pub(crate) struct Scope<'a> {
    store: &'a mut ParamStore,
    prefix: String,
    group: Group,
}

impl Scope<'_> {
    pub(crate) fn sub(&mut self, name: &str) -> Scope<'_> {
        let prefix = self.name(name);
        Scope { store: self.store, prefix, group: self.group }
    }

    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Normal(0, std²) values drawn from the store's seeded generator (Box–Muller).
    pub(crate) fn normal(&mut self, name: &str, shape: &[usize], std: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let rng = &mut self.store.rng;
        let values = (0..n)
            .map(|_| {
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
            })
            .collect();
        Ok(self.store.insert(self.name(name), self.group, values, shape)?.as_tensor().clone())
    }

    /// Uniform(−bound, bound) values (PyTorch's default for linear layers: bound = 1/√fan_in).
    pub(crate) fn uniform(&mut self, name: &str, shape: &[usize], bound: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let rng = &mut self.store.rng;
        let values = (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect();
        Ok(self.store.insert(self.name(name), self.group, values, shape)?.as_tensor().clone())
    }

    pub(crate) fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        Ok(self.store.insert(self.name(name), self.group, vec![value; n], shape)?.as_tensor().clone())
    }

    /// A buffer filled with `value`, filed under [`Group::Buffers`] whatever the scope's group:
    /// never trained, set by its owner (as a `Var`), saved and loaded with the weights.
    pub(crate) fn buffer(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Var> {
        let n: usize = shape.iter().product();
        self.store.insert(self.name(name), Group::Buffers, vec![value; n], shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_save_load_round_trip() {
        let make = |seed| {
            let mut s = ParamStore::new(&Device::Cpu, seed);
            s.scope("a", Group::Head).normal("w", &[3, 4], 0.02).unwrap();
            s.scope("a", Group::Head).uniform("b", &[4], 0.5).unwrap();
            s
        };
        let (x, y, z) = (make(1), make(1), make(2));
        let v = |s: &ParamStore| s.get("a.w").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(&x), v(&y));
        assert_ne!(v(&x), v(&z));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        x.save_groups(&path, &[Group::Head]).unwrap();
        let mut w = make(3);
        assert!(!w.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap());
        assert_eq!(v(&w), v(&x));
        let mut dup = make(1);
        assert!(dup.scope("a", Group::Head).normal("w", &[1], 1.0).is_err(), "duplicate names are refused");
    }

    #[test]
    fn load_names_the_missing_tensor_and_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let mut a = ParamStore::new(&Device::Cpu, 0);
        a.scope("m", Group::Head).normal("w", &[2, 2], 1.0).unwrap();
        a.save_groups(&path, &[Group::Head]).unwrap();
        let mut b = ParamStore::new(&Device::Cpu, 0);
        b.scope("m", Group::Head).normal("w", &[2, 3], 1.0).unwrap();
        let e = format!("{:#}", b.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap_err());
        assert!(e.contains("m.w") && e.contains("[2, 2]"), "{e}");
        let mut c = ParamStore::new(&Device::Cpu, 0);
        c.scope("m", Group::Head).normal("v", &[2, 2], 1.0).unwrap();
        let e = format!("{:#}", c.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap_err());
        assert!(e.contains("has no tensor m.v"), "{e}");
    }

    #[test]
    fn groups_save_apart_and_an_optional_group_loads_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.safetensors");
        let make = |seed| {
            let mut s = ParamStore::new(&Device::Cpu, seed);
            s.scope("head", Group::Head).normal("w", &[2], 1.0).unwrap();
            s.scope("img", Group::ImageEncoder).normal("a", &[2], 1.0).unwrap();
            s.scope("img", Group::ImageEncoder).normal("b", &[2], 1.0).unwrap();
            s
        };
        let v = |s: &ParamStore, n: &str| s.get(n).unwrap().to_vec1::<f32>().unwrap();
        let a = make(1);
        a.save_groups(&path, &[Group::Head]).unwrap();
        let mut b = make(2);
        assert!(!b.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap());
        assert_eq!(v(&b, "head.w"), v(&a, "head.w"));
        assert_ne!(v(&b, "img.a"), v(&a, "img.a"), "a group the file does not hold stays as built");
        a.save_groups(&path, &[Group::Head, Group::ImageEncoder]).unwrap();
        assert!(b.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap());
        assert_eq!(v(&b, "img.b"), v(&a, "img.b"));
        // A file with only part of the optional group is refused, naming what is missing.
        let mut partial = ParamStore::new(&Device::Cpu, 1);
        partial.scope("head", Group::Head).normal("w", &[2], 1.0).unwrap();
        partial.scope("img", Group::ImageEncoder).normal("a", &[2], 1.0).unwrap();
        partial.save_groups(&path, &[Group::Head, Group::ImageEncoder]).unwrap();
        let e = format!("{:#}", b.load_groups(&path, &[Group::Head], Group::ImageEncoder).unwrap_err());
        assert!(e.contains("has no tensor img.b"), "{e}");
    }
}
