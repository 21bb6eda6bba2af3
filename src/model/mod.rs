//! The trainer's model code, the only modules that touch the deep-learning framework (candle):
//! named parameters, layers, the CLIP towers, prompts, the methods' heads (OUS, DFER-CLIP) and
//! the optimiser.

pub(crate) mod adapter;
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
pub(crate) mod prompts;
pub(crate) mod runner;
pub(crate) mod tokenizer;
pub(crate) mod video_descriptions;

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use candle_core::{DType, Device};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::UsageError;

/// Where a model runs (`train.device`, `--device`): `cpu`, `cuda` (the first GPU) or `cuda:N`,
/// written back as it was given, so a config's hash does not change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// `cuda` (`None`) or `cuda:N`.
    Cuda(Option<usize>),
}

impl FromStr for ComputeDevice {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Self, UsageError> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(None)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(Self::Cuda(Some(i))),
                Some(Err(_)) => Err(UsageError::new(format!("device {s}: expected cuda:N with N a GPU index"))),
                None => Err(UsageError::new(format!("device {s}: unknown device (cpu | cuda | cuda:N)"))),
            },
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for ComputeDevice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComputeDevice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl ComputeDevice {
    /// The candle device, and the dtype the image tower runs in on it (bf16 on CUDA with f32
    /// master weights; f32 on CPU). A device that cannot be used is a refusal: nothing has
    /// started.
    pub(crate) fn open(&self) -> Result<(Device, DType)> {
        let refuse = |m: String| -> anyhow::Error { UsageError::new(format!("device {self}: {m}")).into() };
        match self {
            Self::Cpu => Ok((Device::Cpu, DType::F32)),
            Self::Cuda(index) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(refuse(
                        "this dfer was built without the `cuda` feature (docs/gpu.md \"Builds\")".into(),
                    ));
                }
                let dev = Device::new_cuda(index.unwrap_or(0))
                    .map_err(|e| refuse(format!("cannot open it ({e}); is the NVIDIA driver installed?")))?;
                Ok((dev, DType::BF16))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling reads and writes back as given (config hashes depend on it); others are refused.
    #[test]
    fn devices_read_and_write_back_as_given() {
        for s in ["cpu", "cuda", "cuda:0", "cuda:3"] {
            assert_eq!(s.parse::<ComputeDevice>().unwrap().to_string(), s);
        }
        assert_eq!("cuda:1".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cuda(Some(1)));
        for (bad, why) in [("gpu", "unknown device"), ("cuda:x", "cuda:N"), ("CPU", "unknown device")] {
            let e = bad.parse::<ComputeDevice>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }
}
