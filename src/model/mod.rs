//! The trainer's model code, the only modules that touch the deep-learning framework (candle):
//! named parameters, layers, the CLIP towers, prompts, the methods' heads (OUS, DFER-CLIP) and
//! the optimiser.

pub(crate) mod adapter;
pub(crate) mod bench;
pub(crate) mod clip;
pub(crate) mod config;
pub(crate) mod conv;
pub(crate) mod descriptions;
pub(crate) mod dfer_clip;
pub(crate) mod fineclip;
pub(crate) mod frame_gate;
pub(crate) mod ial;
pub(crate) mod ial_net;
pub(crate) mod layers;
pub(crate) mod network;
pub(crate) mod optim;
pub(crate) mod ous;
pub(crate) mod params;
pub(crate) mod pixels;
pub(crate) mod profile;
pub(crate) mod prompts;
pub(crate) mod runner;
pub(crate) mod tokenizer;

use anyhow::Result;
use candle_core::{DType, Device};

use crate::error::UsageError;

/// The compute device named `cpu` or `cuda[:N]`, and the dtype the image tower runs in on it
/// (bf16 on CUDA with f32 master weights; f32 on CPU). A device that cannot be used is a
/// refusal: nothing has started.
pub(crate) fn device(name: &str) -> Result<(Device, DType)> {
    let refuse = |m: String| -> anyhow::Error { UsageError::new(format!("device {name}: {m}")).into() };
    match name {
        "cpu" => Ok((Device::Cpu, DType::F32)),
        n if n == "cuda" || n.starts_with("cuda:") => {
            let index = match n.strip_prefix("cuda:") {
                Some(i) => i.parse().map_err(|_| refuse("expected cuda:N with N a GPU index".into()))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(refuse("this dfer was built without the `cuda` feature (docs/gpu.md \"Builds\")".into()));
            }
            let dev = Device::new_cuda(index)
                .map_err(|e| refuse(format!("cannot open it ({e}); is the NVIDIA driver installed?")))?;
            Ok((dev, DType::BF16))
        }
        _ => Err(refuse("unknown device (cpu | cuda | cuda:N)".into())),
    }
}
