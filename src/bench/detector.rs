//! `dfer bench detector`: what one CenterFace run costs at each input size, on one thread as a
//! prep worker runs it (the astronaut photograph resized to each size). The sparse-detection
//! rule spends detector pixels, so this is the price list it is tuned against.

use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::assets::{self, Asset};
use crate::face::centerface::{CenterFace, CenterFaceSettings};
use crate::face::Detector;
use crate::prep::config::PrepConfig;

/// A detector input size, `WxH`, each side a multiple of 32 (what CenterFace takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSize {
    pub width: u32,
    pub height: u32,
}

impl FromStr for InputSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: not an input size WxH with each side a positive multiple of 32");
        let (w, h) = s.split_once('x').ok_or_else(bad)?;
        let side = |v: &str| v.parse::<u32>().ok().filter(|&v| v > 0 && v % 32 == 0);
        match (side(w), side(h)) {
            (Some(width), Some(height)) => Ok(InputSize { width, height }),
            _ => Err(bad()),
        }
    }
}

/// One input size's cost.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DetectorTiming {
    pub width: u32,
    pub height: u32,
    pub runs: usize,
    /// Median wall time of one run: input conversion, ONNX Runtime, decoding and NMS.
    pub ms_per_run: f64,
    pub ns_per_pixel: f64,
}

/// Times `runs` CenterFace runs (after three unmeasured ones) at each of `sizes`, one thread.
pub(crate) fn time_detector(sizes: &[InputSize], runs: usize) -> Result<Vec<DetectorTiming>> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let cfg = PrepConfig::default();
    let mut det = CenterFace::new(CenterFaceSettings { threshold: cfg.det_threshold, nms_iou: cfg.nms_iou })?;
    let photo = image::open(assets::path(Asset::Astronaut)?)?.to_rgb8();
    let mut out = Vec::with_capacity(sizes.len());
    for &InputSize { width, height } in sizes {
        let img = crate::geometry::resize(&photo, None, width, height);
        let long = width.max(height);
        let mut ms = Vec::with_capacity(runs);
        for k in 0..runs + 3 {
            let t = Instant::now();
            det.detect(&[&img], long)?;
            if k >= 3 {
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        let median = (ms[(ms.len() - 1) / 2] + ms[ms.len() / 2]) / 2.0;
        let ns_per_pixel = median * 1e6 / f64::from(width * height);
        out.push(DetectorTiming { width, height, runs, ms_per_run: median, ns_per_pixel });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_are_multiples_of_32() {
        assert_eq!("352x192".parse(), Ok(InputSize { width: 352, height: 192 }));
        for bad in ["350x192", "352", "0x32", "x32", "32x-32"] {
            assert!(bad.parse::<InputSize>().unwrap_err().contains(bad), "{bad}");
        }
    }
}
