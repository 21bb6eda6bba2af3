//! Training data from prep's shards: which clips belong to a fold's train / test side (from the
//! clip manifest), and a loader that prepares batches on background threads with prefetch:
//! the published loaders' frames (test: segment centres; training: any frame of each
//! segment), clip-consistent augmentation. Shards are opened once; batches are deterministic
//! for a seed and epoch whatever the thread count.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use crossbeam_channel::{bounded, Receiver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::config::{Augment, JitterKind};
use super::points::{self, Points};
use crate::dataset::splits::Role;
use crate::error::UsageError;
use crate::face_source::FaceSource;
use crate::geometry::resize_into;
use crate::manifest::Manifest;
use crate::model::pixels::Colour;
use crate::model::runner::{HostFeatures, HostInput};
use crate::sampling;
use crate::shard::{ShardAttrs, ShardReader, Stream};

/// One clip in a shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClipRef {
    pub shard: usize,
    pub row: usize,
    pub label: usize,
    pub polarity: usize,
    pub clip_id: String,
    pub manifest_row: usize,
    /// Every stored frame is a centre fallback (`no_face_policy = "centre"`): no face was found.
    pub fallback: bool,
}

/// Every shard of a prep output folder, opened once.
pub(crate) struct ShardSet {
    pub readers: Vec<ShardReader>,
}

impl ShardSet {
    pub(crate) fn open(dir: &Path) -> Result<ShardSet> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| UsageError::new(format!("{}: cannot read shard folder: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "h5"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(UsageError::new(format!("{}: no shards (*.h5); run dfer prep first", dir.display())).into());
        }
        let readers = paths.iter().map(|p| ShardReader::open(p)).collect::<Result<Vec<_>>>()?;
        let first = &readers[0].attrs;
        for r in &readers[1..] {
            if r.attrs.config_hash != first.config_hash || r.attrs.label_names != first.label_names {
                bail!(UsageError::new(format!(
                    "{}: made with other prep settings than {} (config hash {} vs {})",
                    r.path.display(),
                    readers[0].path.display(),
                    r.attrs.config_hash,
                    first.config_hash
                )));
            }
        }
        Ok(ShardSet { readers })
    }

    pub(crate) fn attrs(&self) -> &ShardAttrs {
        &self.readers[0].attrs
    }

    /// Identifies the data: prep config hash, shard names and row counts.
    pub(crate) fn data_hash(&self) -> String {
        let mut h = Sha256::new();
        for r in &self.readers {
            h.update(r.attrs.config_hash.as_bytes());
            h.update(r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            h.update(r.len.to_le_bytes());
        }
        crate::digest::hex(&h.finalize())
    }

    /// Clips whose role in `fold` (1-based; ignored for single-split datasets) is `role`, in
    /// manifest order.
    pub(crate) fn clips(&self, manifest: &Manifest, fold: u32, role: Role) -> Result<Vec<ClipRef>> {
        Ok(self.fold_clips(manifest, fold, role)?.1)
    }

    /// [`ShardSet::clips`], with the manifest's role column of the fold.
    pub(crate) fn fold_clips(&self, manifest: &Manifest, fold: u32, role: Role) -> Result<(usize, Vec<ClipRef>)> {
        let col = if manifest.folds == 0 {
            0
        } else {
            ensure!(
                (1..=manifest.folds).contains(&fold),
                UsageError::new(format!("fold {fold} does not exist (the manifest has {} folds)", manifest.folds))
            );
            fold as usize - 1
        };
        Ok((col, self.select(manifest, |roles| roles.get(col).copied().flatten() == Some(role))?))
    }

    /// Every clip of the shards, in manifest order.
    pub(crate) fn all_clips(&self, manifest: &Manifest) -> Result<Vec<ClipRef>> {
        self.select(manifest, |_| true)
    }

    /// Clips whose manifest roles satisfy `keep`. Checks that shards and manifest agree.
    fn select(&self, manifest: &Manifest, keep: impl Fn(&[Option<Role>]) -> bool) -> Result<Vec<ClipRef>> {
        ensure!(
            self.attrs().label_names == manifest.desc.labels,
            UsageError::new(format!(
                "{}: label names {:?} differ from the manifest's {:?}",
                self.readers[0].path.display(),
                self.attrs().label_names,
                manifest.desc.labels
            ))
        );
        let mut out = Vec::new();
        for (si, r) in self.readers.iter().enumerate() {
            let rows = r.manifest_rows()?;
            let labels = r.labels()?;
            let ids = r.clip_ids()?;
            for (i, ((&mr, &label), id)) in rows.iter().zip(&labels).zip(ids).enumerate() {
                let m = manifest.rows.get(mr as usize).with_context(|| {
                    format!("{}: row {i} points at manifest row {mr}, which does not exist", r.path.display())
                })?;
                ensure!(
                    m.clip_id == id && m.label as i64 == label,
                    UsageError::new(format!(
                        "{}: row {i} is clip {id} label {label}, the manifest's row {mr} is {} label {}",
                        r.path.display(),
                        m.clip_id,
                        m.label
                    ))
                );
                if keep(&m.roles) {
                    let label = label as usize;
                    let fallback = r.index.sources(i).iter().all(|&s| FaceSource::from_code(s) == FaceSource::Fallback);
                    out.push(ClipRef {
                        shard: si,
                        row: i,
                        label,
                        polarity: manifest.desc.polarity_of(label).index(),
                        clip_id: id,
                        manifest_row: mr as usize,
                        fallback,
                    });
                }
            }
        }
        out.sort_by_key(|c| c.manifest_row);
        Ok(out)
    }
}

/// How clips are turned into model input.
#[derive(Clone, Debug)]
pub(crate) enum View {
    /// A random frame of each training segment, augmentation; generator from (seed, epoch, clip).
    Train { aug: Augment, seed: u64, epoch: u32 },
    /// The test frames (segment centres), plain resize.
    Test,
}

/// The positions among a clip's stored frames (`stored`, ascending frame numbers of a clip of
/// `n` frames) that `view` takes for `t` segments: the test frames, or in each training
/// segment one stored frame drawn uniformly with `rng` (every frame of the segment when the
/// clip is stored whole, as the published loaders draw).
pub(crate) fn positions(
    stored: &[i32],
    n: usize,
    t: usize,
    rng: Option<&mut ChaCha8Rng>,
) -> std::result::Result<Vec<usize>, String> {
    let below = |f: usize| stored.partition_point(|&x| (x as usize) < f);
    match rng {
        None => sampling::test_indices(n, t)
            .into_iter()
            .map(|f| stored.binary_search(&(f as i32)).map_err(|_| format!("test frame {f} of {n} is not stored")))
            .collect(),
        Some(rng) => sampling::train_segments(n, t)
            .into_iter()
            .map(|seg| {
                let (lo, hi) = (below(seg.start), below(seg.end));
                match hi > lo {
                    true => Ok(lo + rng.random_range(0..hi - lo)),
                    false => Err(format!("no frame of training segment {seg:?} of {n} is stored")),
                }
            })
            .collect(),
    }
}

/// A batch, ready for the model.
pub(crate) struct Batch {
    pub payload: Payload,
    pub labels: Vec<u32>,
    pub polarity: Vec<u32>,
    /// The clips' ids, in batch order.
    pub clips: Vec<String>,
}

pub(crate) enum Payload {
    /// uint8 `face [B, T, S, S, 3]` (cropped, resized, flipped); `scene` the same, or empty when
    /// the scene stream is off; `points` the face frames with their landmarks drawn on, or empty
    /// when FineCLIPER's landmark stream is off; each clip's colour jitter. Normalised on the
    /// device.
    Pixels { face: Vec<u8>, scene: Vec<u8>, points: Vec<u8>, colour: Vec<Colour> },
    /// Cached image-tower features (`dfer embed`).
    Features(HostFeatures),
}

impl Batch {
    /// The batch of `clips[chunk]` carrying `payload`.
    pub(crate) fn of(payload: Payload, clips: &[ClipRef], chunk: &[usize]) -> Batch {
        Batch {
            payload,
            labels: chunk.iter().map(|&i| clips[i].label as u32).collect(),
            polarity: chunk.iter().map(|&i| clips[i].polarity as u32).collect(),
            clips: chunk.iter().map(|&i| clips[i].clip_id.clone()).collect(),
        }
    }

    pub(crate) fn input(&self) -> HostInput<'_> {
        match &self.payload {
            Payload::Pixels { face, scene, points, colour } => {
                HostInput::Pixels { face, scene, points, colour, clips: &self.clips, batch: self.labels.len() }
            }
            Payload::Features(f) => HostInput::Features(f),
        }
    }
}

/// Shape of a model input: `frames` of `size`² pixels, and whether scenes and landmark frames
/// are wanted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputShape {
    pub frames: usize,
    pub size: u32,
    pub scene: bool,
    pub points: bool,
}

/// Batches over `order` in chunks of `batch_size`, made by `make` on a background thread and
/// handed over through a bounded queue of `prefetch` batches. Stops at the first error.
pub(crate) fn prefetch<F>(order: Vec<usize>, batch_size: usize, prefetch: usize, make: F) -> Receiver<Result<Batch>>
where
    F: Fn(&[usize]) -> Result<Batch> + Send + 'static,
{
    let (tx, rx) = bounded(prefetch.max(1));
    std::thread::spawn(move || {
        for chunk in order.chunks(batch_size) {
            let batch = make(chunk);
            let failed = batch.is_err();
            if tx.send(batch).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// Pixel batches of `clips[chunk]` from the shards, clips prepared in parallel on `pool`.
pub(crate) fn pixel_batch(
    set: &ShardSet,
    clips: &[ClipRef],
    chunk: &[usize],
    shape: InputShape,
    view: &View,
    pool: &rayon::ThreadPool,
) -> Result<Batch> {
    pool.install(|| make_batch(set, clips, chunk, shape, view))
}

fn make_batch(set: &ShardSet, clips: &[ClipRef], chunk: &[usize], shape: InputShape, view: &View) -> Result<Batch> {
    let (per, n) = (shape.frames * 3 * (shape.size as usize).pow(2), chunk.len());
    let mut face = vec![0u8; per * n];
    let mut scene = vec![0u8; if shape.scene { per * n } else { 0 }];
    let mut points = vec![0u8; if shape.points { per * n } else { 0 }];
    // Each clip writes its frames straight into its place in the batch.
    let places: Vec<_> = chunk
        .iter()
        .zip(face.chunks_exact_mut(per))
        .zip(optional_rows(&mut scene, per, n))
        .zip(optional_rows(&mut points, per, n))
        .map(|(((&i, face), scene), points)| (i, ClipOut { face, scene, points }))
        .collect();
    let colour = places
        .into_par_iter()
        .map(|(i, out)| prepare_clip(set, &clips[i], shape, view, out))
        .collect::<Result<Vec<Colour>>>()?;
    Ok(Batch::of(Payload::Pixels { face, scene, points, colour }, clips, chunk))
}

/// The `n` rows of `per` bytes of `buf`, or `n` times `None` when it is empty (a stream that is off).
fn optional_rows(buf: &mut [u8], per: usize, n: usize) -> Vec<Option<&mut [u8]>> {
    match buf.is_empty() {
        true => (0..n).map(|_| None).collect(),
        false => buf.chunks_exact_mut(per).map(Some).collect(),
    }
}

/// Per-clip random draws shared by all frames of the clip.
struct ClipAug {
    /// Positions among the clip's stored frames.
    offsets: Vec<usize>,
    face_crop: Option<[f64; 4]>,
    scene_crop: Option<[f64; 4]>,
    flip: bool,
    colour: Colour,
    /// Counter-clockwise turn in degrees, before the crop (0: none).
    rotation: f64,
}

/// The view's frames and augmentation of one clip whose stored frames are `stored` of `n`.
fn draw(view: &View, clip: &ClipRef, frames: (&[i32], usize, usize), face: u32, scene: u32) -> Result<ClipAug, String> {
    let (stored, n, t) = frames;
    match view {
        View::Test => Ok(ClipAug {
            offsets: positions(stored, n, t, None)?,
            face_crop: None,
            scene_crop: None,
            flip: false,
            colour: [1.0; 3],
            rotation: 0.0,
        }),
        View::Train { aug, seed, epoch } => {
            let mut rng = ChaCha8Rng::seed_from_u64(clip_key(*seed, *epoch, clip));
            let offsets = positions(stored, n, t, Some(&mut rng))?;
            let face_crop = Some(random_resized_crop(&mut rng, face, aug));
            let scene_crop = Some(random_resized_crop(&mut rng, scene, aug));
            let flip = aug.flip && rng.random_bool(0.5);
            let j = aug.jitter;
            let mut factor = || if j > 0.0 { rng.random_range(1.0 - j..1.0 + j) as f32 } else { 1.0 };
            let colour = match aug.jitter_kind {
                JitterKind::Colour => [factor(), factor(), factor()],
                JitterKind::Brightness => [factor(), 1.0, 1.0],
            };
            // Drawn last, and only when asked, so runs without rotation draw what they always did.
            let r = aug.rotation;
            let rotation = if r > 0.0 { rng.random_range(-r..=r) } else { 0.0 };
            Ok(ClipAug { offsets, face_crop, scene_crop, flip, colour, rotation })
        }
    }
}

/// The key of a clip's random draws in an epoch: independent of batching and thread count.
pub(crate) fn clip_key(seed: u64, epoch: u32, clip: &ClipRef) -> u64 {
    seed ^ (u64::from(epoch) << 40) ^ (clip.manifest_row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// torchvision's `RandomResizedCrop.get_params`: `[left, top, width, height]` on a `size`² image.
fn random_resized_crop(rng: &mut ChaCha8Rng, size: u32, aug: &Augment) -> [f64; 4] {
    let s = size as f64;
    let (lr0, lr1) = (aug.crop_aspect[0].ln(), aug.crop_aspect[1].ln());
    for _ in 0..10 {
        let area = s * s * rng.random_range(aug.crop_area[0]..=aug.crop_area[1]);
        let ratio = rng.random_range(lr0..=lr1).exp();
        let w = (area * ratio).sqrt().round();
        let h = (area / ratio).sqrt().round();
        if w >= 1.0 && h >= 1.0 && w <= s && h <= s {
            let left = rng.random_range(0..=(s - w) as u32) as f64;
            let top = rng.random_range(0..=(s - h) as u32) as f64;
            return [left, top, w, h];
        }
    }
    [0.0, 0.0, s, s]
}

/// Where one clip's frames go, each uint8 `[T, size, size, 3]`: faces, and scenes and landmark
/// frames when those streams are on.
struct ClipOut<'a> {
    face: &'a mut [u8],
    scene: Option<&'a mut [u8]>,
    points: Option<&'a mut [u8]>,
}

/// One clip's frames of every stream that is on into `out`; returns its colour jitter.
fn prepare_clip(set: &ShardSet, clip: &ClipRef, shape: InputShape, view: &View, out: ClipOut) -> Result<Colour> {
    let reader = &set.readers[clip.shard];
    let a = &reader.attrs;
    let meta = (reader.index.frames(clip.row), reader.index.clip_frames[clip.row], shape.frames);
    let aug = draw(view, clip, meta, a.face_size, a.scene_size)
        .map_err(|m| anyhow::anyhow!("{}: clip {} (row {}): {m}", reader.path.display(), clip.clip_id, clip.row))?;
    let out_len = 3 * (shape.size as usize).pow(2);
    // A stored frame of side `side` into one output frame: turned, cropped, resized, flipped.
    let place = |px: &[u8], side: u32, crop: Option<[f64; 4]>, turned: &mut [u8], dst: &mut [u8]| {
        let px = match aug.rotation != 0.0 {
            true => {
                rotate_into(px, side, aug.rotation, turned);
                &turned[..]
            }
            false => px,
        };
        put_frame(px, side, crop, aug.flip, shape.size, dst)
    };
    // `marked`: each stored frame's points and where the same frames go again with them drawn on
    // (before the augmentation, which then moves them with the face), from the same decode.
    let fill = |stream: Stream, crop, dst: &mut [u8], mut marked: Option<(&[Option<Points>], &mut [u8])>| {
        let side = a.side(stream);
        let frame_len = (side * side * 3) as usize;
        let mut turned = vec![0u8; if aug.rotation != 0.0 { frame_len } else { 0 }];
        let mut drawn = vec![0u8; if marked.is_some() { frame_len } else { 0 }];
        // Only the frames this view uses are read (and decoded, in a JPEG shard).
        reader.each_frame(clip.row, stream, &aug.offsets, |k, px| {
            let at = k * out_len..(k + 1) * out_len;
            place(px, side, crop, &mut turned, &mut dst[at.clone()]);
            if let Some((marks, points_dst)) = &mut marked {
                drawn.copy_from_slice(px);
                if let Some(p) = &marks[aug.offsets[k]] {
                    points::draw(&mut drawn, side, p);
                }
                place(&drawn, side, crop, &mut turned, &mut points_dst[at]);
            }
        })
    };
    let marks = match out.points.is_some() {
        true => Some(points::crop_points(&reader.tracking(clip.row)?, a.margin, a.face_size)),
        false => None,
    };
    fill(Stream::Face, aug.face_crop, out.face, marks.as_deref().zip(out.points))?;
    if let Some(scene) = out.scene {
        fill(Stream::Scene, aug.scene_crop, scene, None)?;
    }
    Ok(aug.colour)
}

/// One frame of side `size` → `dst`, a frame of side `out` (both `[S, S, 3]`): cropped, resized
/// and flipped.
fn put_frame(src: &[u8], size: u32, crop: Option<[f64; 4]>, flip: bool, out: u32, dst: &mut [u8]) {
    if crop.is_none() && size == out {
        dst.copy_from_slice(src);
    } else {
        resize_into(src, size, size, crop, out, out, dst);
    }
    if flip {
        mirror(dst, out as usize);
    }
}

/// A square RGB frame of side `side` turned counter-clockwise by `degrees` about its centre
/// into `out`, nearest pixel, corners black: PIL's `Image.rotate(degrees)` with its defaults.
fn rotate_into(src: &[u8], side: u32, degrees: f64, out: &mut [u8]) {
    let n = side as usize;
    let (sin, cos) = degrees.to_radians().sin_cos();
    let c = side as f64 / 2.0;
    for y in 0..n {
        for x in 0..n {
            // The source of output pixel (x, y): its centre turned back (clockwise on screen).
            let (dx, dy) = (x as f64 + 0.5 - c, y as f64 + 0.5 - c);
            let sx = cos * dx - sin * dy + c;
            let sy = sin * dx + cos * dy + c;
            let o = 3 * (y * n + x);
            if sx >= 0.0 && sy >= 0.0 && sx < side as f64 && sy < side as f64 {
                let i = 3 * (sy as usize * n + sx as usize);
                out[o..o + 3].copy_from_slice(&src[i..i + 3]);
            } else {
                out[o..o + 3].fill(0);
            }
        }
    }
}

/// Mirrors an RGB frame of width `w` left–right, in place: each row's bytes reversed, then each
/// pixel's channels put back in order.
fn mirror(frame: &mut [u8], w: usize) {
    for row in frame.chunks_exact_mut(3 * w) {
        row.reverse();
        row.chunks_exact_mut(3).for_each(|px| px.swap(0, 2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(row: usize) -> ClipRef {
        ClipRef { shard: 0, row: 0, label: 0, polarity: 0, clip_id: "c".into(), manifest_row: row, fallback: false }
    }

    #[test]
    fn draws_are_per_clip_and_epoch_and_crops_stay_inside() {
        let aug = Augment::default();
        let v = |epoch| View::Train { aug: aug.clone(), seed: 7, epoch };
        // A clip of 9 frames stored whole, 4 segments: training draws from [0,2), [2,4), [4,6), [6,8).
        let whole: Vec<i32> = (0..9).collect();
        let a = draw(&v(0), &clip(3), (&whole, 9, 4), 224, 224).unwrap();
        let b = draw(&v(0), &clip(3), (&whole, 9, 4), 224, 224).unwrap();
        let c = draw(&v(1), &clip(3), (&whole, 9, 4), 224, 224).unwrap();
        assert_eq!((a.offsets.clone(), a.face_crop, a.flip), (b.offsets.clone(), b.face_crop, b.flip));
        assert_ne!((a.face_crop, a.scene_crop), (c.face_crop, c.scene_crop));
        for (i, o) in a.offsets.iter().enumerate() {
            assert!((2 * i..2 * i + 2).contains(o), "offset {o} outside segment {i}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..500 {
            let [l, t, w, h] = random_resized_crop(&mut rng, 224, &aug);
            assert!(l >= 0.0 && t >= 0.0 && l + w <= 224.0 && t + h <= 224.0 && w >= 1.0 && h >= 1.0);
            let area = w * h / (224.0 * 224.0);
            assert!((0.07..=1.0).contains(&area), "{area}");
        }
        let t = draw(&View::Test, &clip(3), (&whole, 9, 4), 224, 224).unwrap();
        assert_eq!(t.offsets, vec![1, 3, 5, 7], "int(1.125 + 2.25 i)");
        assert!(t.face_crop.is_none() && !t.flip);
    }

    #[test]
    fn views_map_frames_to_stored_positions() {
        // 100 frames, stored as 16 segments' test frames plus a pool: positions, not frame numbers.
        let stored: Vec<i32> = sampling::stored_frames(100, 16, 64).iter().map(|&f| f as i32).collect();
        let test = positions(&stored, 100, 16, None).unwrap();
        let frames: Vec<usize> = test.iter().map(|&p| stored[p] as usize).collect();
        assert_eq!(frames, sampling::test_indices(100, 16));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let pos = positions(&stored, 100, 16, Some(&mut rng)).unwrap();
            for (seg, &p) in sampling::train_segments(100, 16).iter().zip(&pos) {
                assert!(seg.contains(&(stored[p] as usize)), "frame {} outside {seg:?}", stored[p]);
                seen.insert(stored[p]);
            }
        }
        let pool: Vec<i32> = stored.iter().copied().filter(|&f| f < 96).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), pool, "every stored frame of a segment is drawn");
        // A short clip: 5 frames, 8 segments, the last frame repeated.
        let short = [0, 1, 2, 3, 4];
        assert_eq!(positions(&short, 5, 8, None).unwrap(), vec![0, 1, 2, 3, 4, 4, 4, 4]);
        assert_eq!(positions(&short, 5, 8, Some(&mut rng)).unwrap(), vec![0, 1, 2, 3, 4, 4, 4, 4]);
        // A frame the rule needs but the shard lacks is an error, not a neighbour.
        let e = positions(&[0, 2, 4], 5, 2, None).unwrap_err();
        assert!(e.contains("test frame 1 of 5"), "{e}");
    }

    #[test]
    fn frames_flip_and_keep_channel_order() {
        // Two rows of three pixels.
        let src = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
        let mut dst = [0u8; 18];
        put_frame(&src, 3, None, false, 3, &mut dst);
        assert_eq!(dst, src, "the test view copies the frame as it is");
        put_frame(&src, 3, None, true, 3, &mut dst);
        assert_eq!(dst, [7, 8, 9, 4, 5, 6, 1, 2, 3, 16, 17, 18, 13, 14, 15, 10, 11, 12], "mirrored, RGB kept");
        mirror(&mut dst, 3);
        assert_eq!(dst, src, "mirroring twice is the identity");
    }

    #[test]
    fn rotation_turns_counter_clockwise_like_pil() {
        // A 4x4 frame whose pixel (x, y) holds [x, y, 1].
        let src: Vec<u8> = (0..16).flat_map(|i| [(i % 4) as u8, (i / 4) as u8, 1]).collect();
        let mut out = vec![9u8; src.len()];
        rotate_into(&src, 4, 0.0, &mut out);
        assert_eq!(out, src, "0 degrees is the identity");
        rotate_into(&src, 4, 90.0, &mut out);
        // Counter-clockwise by 90: the top-right source pixel (3, 0) lands top-left, the
        // bottom-left one (0, 3) bottom-right.
        assert_eq!(&out[0..3], &[3, 0, 1]);
        assert_eq!(&out[3 * 15..3 * 16], &[0, 3, 1]);
        rotate_into(&src, 4, 45.0, &mut out);
        assert_eq!(&out[0..3], &[0, 0, 0], "a corner turned out of the frame is black");
    }
}
