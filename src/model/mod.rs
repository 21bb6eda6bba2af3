//! The trainer's model code, the only modules that touch the deep-learning framework (candle):
//! named parameters, layers, the CLIP towers, prompts, the OUS model and its optimiser.

pub mod bench;
pub mod clip;
pub mod layers;
pub mod optim;
pub mod ous;
pub mod params;
pub mod profile;
pub mod prompts;
pub mod runner;
pub mod tokenizer;

use anyhow::{bail, Result};
use candle_core::{DType, Device};

/// The compute device named `cpu` or `cuda[:N]`, and the dtype the image tower runs in on it
/// (bf16 on CUDA with f32 master weights; f32 on CPU).
pub fn device(name: &str) -> Result<(Device, DType)> {
    match name {
        "cpu" => Ok((Device::Cpu, DType::F32)),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index = n.strip_prefix("cuda:").map(str::parse).transpose()?.unwrap_or(0);
            if !candle_core::utils::cuda_is_available() {
                bail!("device {n}: this dfer was built without the `cuda` feature (see README, GPU build)");
            }
            let dev = Device::new_cuda(index)
                .map_err(|e| anyhow::anyhow!("device {n}: cannot open it ({e}); is the NVIDIA driver installed?"))?;
            Ok((dev, DType::BF16))
        }
        other => bail!("unknown device {other:?} (cpu | cuda | cuda:N)"),
    }
}
