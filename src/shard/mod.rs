//! HDF5 shards (`shards/NNNNN.h5`, docs/architecture.md §3.3): the only module that touches hdf5. A shard is
//! written under a temporary name by one writer and renamed when complete; object timestamps
//! are off, so the same inputs and config give byte-identical files.

pub(crate) mod features;
pub(crate) mod inspect;
mod jpeg;
pub(crate) mod layout;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use hdf5::types::{VarLenArray, VarLenUnicode};
use hdf5::{Dataset, Extent, File, H5Type, SimpleExtents};
use ndarray::{ArrayView, IxDyn};

use crate::error::UsageError;
use crate::face_source::FaceSource;
use crate::geometry::{BoxF, MaskMode, SceneFit};
use crate::text_enum::text_enum;

text_enum! {
    /// One of a clip's two pixel streams, by its dataset name.
    pub(crate) enum Stream("stream") {
        Face = "face",
        Scene = "scene",
    }
}

/// Shard schema version, stored as the `schema_version` attribute. Version 2 stores a variable
/// number of frames per clip, end to end in per-frame datasets (`frame_start`, `frame_count`);
/// version 1 stored a fixed number per clip in `[N, T, …]` datasets and is refused.
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// File name of shard `index`.
pub(crate) fn shard_name(index: usize) -> String {
    format!("{index:05}.h5")
}

text_enum! {
    /// How a shard stores face and scene pixels (attribute `encoding`). F is the number of
    /// frames the shard stores, all clips together.
    pub enum Encoding("pixel encoding") {
        /// `face` / `scene` uint8 `[F, S, S, 3]`, uncompressed.
        Raw = "raw",
        /// The same arrays with HDF5's built-in shuffle + deflate (lossless, no plugins).
        Gzip = "gzip",
        /// `face` / `scene` variable-length uint8 `[F]`: one baseline JPEG per frame.
        Jpeg = "jpeg",
    }
}

text_enum! {
    /// Where a shard's face frames come from (attribute `face_crops`).
    #[derive(Default)]
    pub enum FaceCrops("face_crops") {
        /// Cropped by dfer around the face its detector found and tracked.
        #[default]
        Detect = "detect",
        /// The dataset's own face-crop folder, frame for frame, as it is (resized only when its
        /// size differs from `face_size`).
        Dataset = "dataset",
    }
}

/// Pixel storage of a shard: the encoding and its level (gzip 1–9) or quality (JPEG 1–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub encoding: Encoding,
    pub gzip_level: u8,
    pub jpeg_quality: u8,
}

impl PixelFormat {
    #[cfg(test)]
    pub(crate) const RAW: PixelFormat = PixelFormat { encoding: Encoding::Raw, gzip_level: 0, jpeg_quality: 0 };
}

/// One stream's frames of a clip, each a JPEG file.
pub(crate) type JpegFrames = Vec<Vec<u8>>;

/// A clip's face and scene pixels as the shard stores them: the raw arrays are taken from the
/// clip's tensors, JPEG frames are encoded beforehand, one at a time as the prep workers make
/// them ([`FrameSink`]).
#[derive(Debug, Clone)]
pub(crate) enum StoredPixels {
    Raw,
    Jpeg { face: JpegFrames, scene: JpegFrames },
}

/// A frame the JPEG encoder refused: a fault of the run, not of the clip (prep stops).
#[derive(Debug)]
pub(crate) struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JPEG encoding failed: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Gathers a clip's frames one at a time in a shard's pixel format: raw frames appended to the
/// clip's arrays, JPEG frames encoded as they come, so a worker never holds a clip's raw frames
/// when the shard stores JPEG (about 19 MB a clip of 64 frames at 224 px, both streams).
#[cfg(feature = "media")]
pub(crate) struct FrameSink {
    jpeg_quality: Option<u8>,
    face: JpegFrames,
    scene: JpegFrames,
}

#[cfg(feature = "media")]
impl FrameSink {
    pub(crate) fn new(format: PixelFormat) -> FrameSink {
        let jpeg_quality = (format.encoding == Encoding::Jpeg).then_some(format.jpeg_quality);
        FrameSink { jpeg_quality, face: Vec::new(), scene: Vec::new() }
    }

    /// Takes one `side` × `side` RGB frame of `stream`: encoded, or appended to `raw` (the
    /// stream's array in the clip's tensors).
    pub(crate) fn push(
        &mut self,
        stream: Stream,
        frame: &[u8],
        side: u32,
        raw: &mut Vec<u8>,
    ) -> std::result::Result<(), EncodeError> {
        match self.jpeg_quality {
            Some(q) => {
                let encoded = jpeg::encode(frame, side, q).map_err(|e| EncodeError(format!("{e:#}")))?;
                match stream {
                    Stream::Face => self.face.push(encoded),
                    Stream::Scene => self.scene.push(encoded),
                }
            }
            None => raw.extend_from_slice(frame),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> StoredPixels {
        match self.jpeg_quality {
            Some(_) => StoredPixels::Jpeg { face: self.face, scene: self.scene },
            None => StoredPixels::Raw,
        }
    }
}

/// Encodes a clip's frames for a shard of `format` (`[m, S, S, 3]` each stream).
#[cfg(all(test, feature = "media"))]
pub(crate) fn encode_pixels(
    t: &ClipTensors,
    format: PixelFormat,
    face_size: u32,
    scene_size: u32,
) -> Result<StoredPixels> {
    let mut sink = FrameSink::new(format);
    let mut unused = Vec::new();
    for (stream, pixels, side) in [(Stream::Face, &t.face, face_size), (Stream::Scene, &t.scene, scene_size)] {
        if side > 0 {
            for f in pixels.chunks_exact((side * side * 3) as usize) {
                sink.push(stream, f, side, &mut unused)?;
            }
        }
    }
    Ok(sink.finish())
}

/// Shard-level attributes: everything needed to know how the tensors were made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardAttrs {
    pub dataset: String,
    pub label_names: Vec<String>,
    /// Polarity name of each label, in label order.
    pub label_polarity: Vec<String>,
    /// Frames the model sees (T, the number of segments) and the most frames a clip stores.
    pub frames: usize,
    pub store_frames: usize,
    pub face_size: u32,
    /// Side of the masked scene frames; 0 when the shard has no scene stream.
    pub scene_size: u32,
    pub face_crops: FaceCrops,
    pub sampling: String,
    pub detector: String,
    pub detector_hash: String,
    pub mask_mode: MaskMode,
    pub mask_scale: f32,
    pub margin: f32,
    pub scene_fit: SceneFit,
    pub config_hash: String,
    pub config_toml: String,
    pub tool_version: String,
    pub shard_index: usize,
    /// Manifest rows this shard covers: `[first, end)`.
    pub manifest_rows: [usize; 2],
    pub pixels: PixelFormat,
}

impl ShardAttrs {
    /// The side of `stream`'s square frames.
    pub(crate) fn side(&self, stream: Stream) -> u32 {
        match stream {
            Stream::Face => self.face_size,
            Stream::Scene => self.scene_size,
        }
    }

    /// Whether the shard stores masked scene frames.
    pub(crate) fn has_scene(&self) -> bool {
        self.scene_size > 0
    }
}

/// The tensors of one clip, in shard layout (m stored frames).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTensors {
    /// `[m, S, S, 3]` uint8.
    pub face: Vec<u8>,
    /// `[m, S2, S2, 3]` uint8; empty without a scene stream.
    pub scene: Vec<u8>,
    /// Frames of the whole clip (n): the frame numbers below run in `0..n`.
    pub clip_frames: usize,
    /// Frame number (presentation order) of each stored frame, ascending; with dataset crops,
    /// the crop folder's file number.
    pub frame_index: Vec<i32>,
    /// The video frame each stored frame's scene comes from (−1 without a scene stream); with
    /// detected crops, `frame_index` itself.
    pub scene_frame: Vec<i32>,
    pub face_box: Vec<BoxF>,
    pub face_score: Vec<f32>,
    pub face_source: Vec<u8>,
    pub landmarks: Vec<[[f32; 2]; 5]>,
    /// Shot of each stored frame (0, 1, … at each cut).
    pub shot: Vec<i32>,
    /// Display size (width, height) of the source frames the boxes refer to.
    pub frame_size: [u32; 2],
}

/// One clip row to append.
pub(crate) struct ShardRow<'a> {
    pub clip_id: &'a str,
    pub label: usize,
    pub manifest_row: usize,
    pub tensors: &'a ClipTensors,
    /// The frames encoded for this shard's pixel format ([`FrameSink`]).
    pub stored: &'a StoredPixels,
}

fn vlu(s: &str) -> Result<VarLenUnicode> {
    VarLenUnicode::from_str(s).map_err(|e| anyhow::anyhow!("string not storable in HDF5: {e}"))
}

/// Appends clips to a new shard; `finish` renames it into place.
pub(crate) struct ShardWriter {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    /// Clips and frames written so far.
    n: usize,
    frames: usize,
    encoding: Encoding,
    columns: Columns,
}

/// The open datasets of a shard being written: per clip, then per frame.
struct Columns {
    label: Dataset,
    clip_id: Dataset,
    manifest_row: Dataset,
    frame_size: Dataset,
    clip_frames: Dataset,
    frame_start: Dataset,
    frame_count: Dataset,
    face: Dataset,
    scene: Option<Dataset>,
    frame_index: Dataset,
    scene_frame: Dataset,
    face_box: Dataset,
    face_score: Dataset,
    face_source: Dataset,
    landmarks: Dataset,
    shot: Dataset,
}

/// A dataset that grows along its first axis, `rows` rows per chunk.
fn growable<T: H5Type>(file: &File, name: &str, inner: &[usize], rows: usize, gzip: u8) -> Result<Dataset> {
    let mut ext = vec![Extent::resizable(0)];
    ext.extend(inner.iter().map(|&d| Extent::fixed(d)));
    let mut chunk = vec![rows];
    chunk.extend_from_slice(inner);
    let mut b = file.new_dataset::<T>().shape(SimpleExtents::from_vec(ext)).chunk(chunk).obj_track_times(false);
    if gzip > 0 {
        b = b.shuffle().deflate(gzip);
    }
    b.create(name).with_context(|| format!("{}: cannot create dataset {name}", file.filename()))
}

/// Writes `data` as rows `[at, at + rows)` of `ds`, growing it to `at + rows`.
fn put<T: H5Type>(ds: &Dataset, at: usize, rows: usize, data: &[T]) -> Result<()> {
    let mut shape = ds.shape();
    shape[0] = at + rows;
    ds.resize(shape.clone())?;
    if rows == 0 {
        return Ok(());
    }
    shape[0] = rows;
    let view = ArrayView::from_shape(IxDyn(&shape), data)?;
    let mut sel: Vec<ndarray::SliceInfoElem> = vec![(at..at + rows).into()];
    sel.extend(shape[1..].iter().map(|_| ndarray::SliceInfoElem::from(..)));
    ds.write_slice(&view, ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from(sel)?)?;
    Ok(())
}

impl ShardWriter {
    /// Starts shard `attrs.shard_index` in `dir` under a temporary name.
    pub(crate) fn create(dir: &Path, attrs: &ShardAttrs) -> Result<ShardWriter> {
        let path = dir.join(shard_name(attrs.shard_index));
        let tmp = crate::atomic::tmp_path(&path);
        let file = File::with_options()
            .with_fcpl(|p| p.obj_track_times(false))
            .create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        let pixels = |name: &str, side: u32| {
            let side = side as usize;
            match attrs.pixels.encoding {
                Encoding::Raw => growable::<u8>(&file, name, &[side, side, 3], 1, 0),
                Encoding::Gzip => growable::<u8>(&file, name, &[side, side, 3], 1, attrs.pixels.gzip_level),
                Encoding::Jpeg => growable::<VarLenArray<u8>>(&file, name, &[], 64, 0),
            }
        };
        let columns = Columns {
            label: growable::<i64>(&file, "label", &[], 64, 0)?,
            clip_id: growable::<VarLenUnicode>(&file, "clip_id", &[], 64, 0)?,
            manifest_row: growable::<i64>(&file, "manifest_row", &[], 64, 0)?,
            frame_size: growable::<u32>(&file, "frame_size", &[2], 64, 0)?,
            clip_frames: growable::<i64>(&file, "clip_frames", &[], 64, 0)?,
            frame_start: growable::<i64>(&file, "frame_start", &[], 64, 0)?,
            frame_count: growable::<i64>(&file, "frame_count", &[], 64, 0)?,
            face: pixels("face", attrs.face_size)?,
            scene: attrs.has_scene().then(|| pixels("scene", attrs.scene_size)).transpose()?,
            frame_index: growable::<i32>(&file, "frame_index", &[], 256, 0)?,
            scene_frame: growable::<i32>(&file, "scene_frame", &[], 256, 0)?,
            face_box: growable::<f32>(&file, "face_box", &[4], 256, 0)?,
            face_score: growable::<f32>(&file, "face_score", &[], 256, 0)?,
            face_source: growable::<u8>(&file, "face_source", &[], 256, 0)?,
            landmarks: growable::<f32>(&file, "landmarks", &[5, 2], 256, 0)?,
            shot: growable::<i32>(&file, "shot", &[], 256, 0)?,
        };
        let w = ShardWriter { file, tmp, path, n: 0, frames: 0, encoding: attrs.pixels.encoding, columns };
        w.write_attrs(attrs).with_context(|| format!("{}: cannot write attributes", w.tmp.display()))?;
        Ok(w)
    }

    fn write_attrs(&self, a: &ShardAttrs) -> Result<()> {
        let f = &self.file;
        let u = |name: &str, v: u64| -> Result<()> { Ok(f.new_attr::<u64>().create(name)?.write_scalar(&v)?) };
        let fl = |name: &str, v: f32| -> Result<()> { Ok(f.new_attr::<f32>().create(name)?.write_scalar(&v)?) };
        let st = |name: &str, v: &str| -> Result<()> {
            Ok(f.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&vlu(v)?)?)
        };
        let list = |name: &str, v: &[String]| -> Result<()> {
            let arr: Vec<VarLenUnicode> = v.iter().map(|s| vlu(s)).collect::<Result<_>>()?;
            Ok(f.new_attr::<VarLenUnicode>().shape(arr.len()).create(name)?.write(&arr)?)
        };
        u("schema_version", SCHEMA_VERSION as u64)?;
        st("dataset", &a.dataset)?;
        list("label_names", &a.label_names)?;
        list("label_polarity", &a.label_polarity)?;
        u("frames", a.frames as u64)?;
        u("store_frames", a.store_frames as u64)?;
        u("face_size", a.face_size as u64)?;
        u("scene_size", a.scene_size as u64)?;
        st("face_crops", a.face_crops.as_str())?;
        st("sampling", &a.sampling)?;
        st("detector", &a.detector)?;
        st("detector_hash", &a.detector_hash)?;
        st("mask_mode", a.mask_mode.as_str())?;
        fl("mask_scale", a.mask_scale)?;
        fl("margin", a.margin)?;
        st("scene_fit", a.scene_fit.as_str())?;
        st("config_hash", &a.config_hash)?;
        st("config_toml", &a.config_toml)?;
        st("tool_version", &a.tool_version)?;
        u("shard_index", a.shard_index as u64)?;
        st("encoding", a.pixels.encoding.as_str())?;
        u("gzip_level", a.pixels.gzip_level as u64)?;
        u("jpeg_quality", a.pixels.jpeg_quality as u64)?;
        let rows = [a.manifest_rows[0] as u64, a.manifest_rows[1] as u64];
        f.new_attr::<u64>().shape(2).create("manifest_rows")?.write(&rows)?;
        Ok(())
    }

    /// Appends one clip as the next row.
    pub(crate) fn append(&mut self, row: &ShardRow) -> Result<()> {
        self.append_row(row).with_context(|| format!("{}: cannot write clip {}", self.tmp.display(), row.clip_id))
    }

    fn append_row(&mut self, row: &ShardRow) -> Result<()> {
        let x = row.tensors;
        let m = x.frame_index.len();
        let per_frame = [x.scene_frame.len(), x.face_box.len(), x.face_score.len(), x.face_source.len(), x.shot.len()];
        if m == 0 || per_frame.iter().any(|&k| k != m) || x.landmarks.len() != m {
            bail!("clip {} has {m} stored frames but per-frame records of lengths {per_frame:?}", row.clip_id);
        }
        if x.frame_index.windows(2).any(|w| w[0] >= w[1])
            || x.frame_index.iter().any(|&f| f < 0 || f as usize >= x.clip_frames)
        {
            bail!("clip {}: stored frame numbers must ascend within 0..{}", row.clip_id, x.clip_frames);
        }
        let (n, f0) = (self.n, self.frames);
        let c = &self.columns;
        match (self.encoding, row.stored) {
            (Encoding::Jpeg, StoredPixels::Jpeg { face, scene }) => {
                let vl = |frames: &[Vec<u8>]| frames.iter().map(|f| VarLenArray::from_slice(f)).collect::<Vec<_>>();
                put(&c.face, f0, m, &vl(face))?;
                if let Some(ds) = &c.scene {
                    put(ds, f0, m, &vl(scene))?;
                }
            }
            (Encoding::Raw | Encoding::Gzip, StoredPixels::Raw) => {
                put(&c.face, f0, m, &x.face)?;
                if let Some(ds) = &c.scene {
                    put(ds, f0, m, &x.scene)?;
                }
            }
            (e, _) => bail!("clip {}: pixels not encoded for this {} shard", row.clip_id, e.as_str()),
        }
        put(&c.label, n, 1, &[row.label as i64])?;
        put(&c.clip_id, n, 1, &[vlu(row.clip_id)?])?;
        put(&c.manifest_row, n, 1, &[row.manifest_row as i64])?;
        put(&c.frame_size, n, 1, &x.frame_size)?;
        put(&c.clip_frames, n, 1, &[x.clip_frames as i64])?;
        put(&c.frame_start, n, 1, &[f0 as i64])?;
        put(&c.frame_count, n, 1, &[m as i64])?;
        put(&c.frame_index, f0, m, &x.frame_index)?;
        put(&c.scene_frame, f0, m, &x.scene_frame)?;
        put(&c.face_box, f0, m, x.face_box.as_flattened())?;
        put(&c.face_score, f0, m, &x.face_score)?;
        put(&c.face_source, f0, m, &x.face_source)?;
        let lm: Vec<f32> = x.landmarks.iter().flat_map(|l| l.iter().flatten().copied()).collect();
        put(&c.landmarks, f0, m, &lm)?;
        put(&c.shot, f0, m, &x.shot)?;
        self.n += 1;
        self.frames += m;
        Ok(())
    }

    /// Closes the file and renames it to its final name. The datasets close first: HDF5 keeps
    /// a file open while any of its objects is, and the file must be whole before the rename.
    pub(crate) fn finish(self) -> Result<PathBuf> {
        let ShardWriter { file, tmp, path, columns, .. } = self;
        drop(columns);
        file.close().with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("{}: cannot rename into place", path.display()))?;
        Ok(path)
    }
}

/// Where each clip's frames are, read once when a shard opens: what a loader needs to choose
/// frames without touching the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClipIndex {
    /// Per clip: first row in the per-frame datasets, stored frames, frames of the whole clip.
    pub start: Vec<usize>,
    pub count: Vec<usize>,
    pub clip_frames: Vec<usize>,
    /// Per stored frame: its frame number and the source of its face crop (`face_source` code).
    pub frame_index: Vec<i32>,
    pub face_source: Vec<u8>,
}

impl ClipIndex {
    /// Stored frame numbers of clip `i`.
    pub(crate) fn frames(&self, i: usize) -> &[i32] {
        &self.frame_index[self.start[i]..self.start[i] + self.count[i]]
    }

    /// Face-source codes of clip `i`'s stored frames.
    pub(crate) fn sources(&self, i: usize) -> &[u8] {
        &self.face_source[self.start[i]..self.start[i] + self.count[i]]
    }
}

/// Read access to a complete shard.
pub struct ShardReader {
    pub path: PathBuf,
    file: File,
    pub attrs: ShardAttrs,
    pub len: usize,
    pub(crate) index: ClipIndex,
}

/// A scalar u64 attribute; a missing or unreadable one is an error naming the file.
pub(crate) fn attr_u64(file: &File, name: &str, path: &Path) -> Result<u64> {
    file.attr(name)
        .and_then(|a| a.read_scalar::<u64>())
        .map_err(|e| UsageError::new(format!("{}: attribute {name}: {e}", path.display())).into())
}

/// A scalar UTF-8 string attribute; a missing or unreadable one is an error naming the file.
pub(crate) fn attr_string(file: &File, name: &str, path: &Path) -> Result<String> {
    file.attr(name)
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .map(|s| s.to_string())
        .map_err(|e| UsageError::new(format!("{}: attribute {name}: {e}", path.display())).into())
}

/// The `encoding`, `gzip_level` and `jpeg_quality` attributes.
fn pixel_format(file: &File, path: &Path) -> Result<PixelFormat> {
    let encoding = attr_string(file, "encoding", path)?
        .parse::<Encoding>()
        .map_err(|e| UsageError::new(format!("{}: attribute encoding: {e}", path.display())))?;
    let level = |name: &str| -> Result<u8> { Ok(attr_u64(file, name, path)?.min(100) as u8) };
    Ok(PixelFormat { encoding, gzip_level: level("gzip_level")?, jpeg_quality: level("jpeg_quality")? })
}

impl ShardReader {
    /// Opens a shard, checking its schema version, its datasets and where each clip's frames are.
    pub fn open(path: &Path) -> Result<ShardReader> {
        let file = File::open(path)
            .map_err(|e| UsageError::new(format!("{}: not a readable HDF5 shard: {e}", path.display())))?;
        let attrs = read_attrs(&file, path)?;
        let (len, frames) = check_datasets(&file, path, &attrs)?;
        let index = read_index(&file, path, len, frames)?;
        Ok(ShardReader { path: path.to_path_buf(), file, attrs, len, index })
    }

    fn ds(&self, name: &str) -> Result<Dataset> {
        Ok(self.file.dataset(name)?)
    }

    /// The shape of every dataset in the shard, by name.
    pub(crate) fn shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
        let names =
            self.file.member_names().with_context(|| format!("{}: cannot list datasets", self.path.display()))?;
        names.into_iter().map(|name| Ok((name.clone(), self.ds(&name)?.shape()))).collect()
    }

    pub fn labels(&self) -> Result<Vec<i64>> {
        Ok(self.ds("label")?.read_raw::<i64>()?)
    }

    pub fn clip_ids(&self) -> Result<Vec<String>> {
        Ok(self.ds("clip_id")?.read_raw::<VarLenUnicode>()?.iter().map(|s| s.to_string()).collect())
    }

    pub fn manifest_rows(&self) -> Result<Vec<i64>> {
        Ok(self.ds("manifest_row")?.read_raw::<i64>()?)
    }

    /// Rows `rows` of dataset `name`, flattened.
    fn rows<T: H5Type + Clone>(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<T>> {
        let ds = self.ds(name)?;
        let shape = ds.shape();
        let mut sel: Vec<ndarray::SliceInfoElem> = vec![rows.clone().into()];
        sel.extend(shape[1..].iter().map(|_| ndarray::SliceInfoElem::from(..)));
        let a: ndarray::ArrayD<T> = ds
            .read_slice(ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from(sel)?)
            .with_context(|| format!("{}: reading {name} rows {rows:?}", self.path.display()))?;
        Ok(a.into_raw_vec_and_offset().0)
    }

    /// Clip `i`'s rows in the per-frame datasets.
    fn frame_rows(&self, i: usize) -> std::ops::Range<usize> {
        self.index.start[i]..self.index.start[i] + self.index.count[i]
    }

    /// The scene stream's frames, or an error naming the shard when it has none.
    fn require(&self, stream: Stream) -> Result<()> {
        if stream == Stream::Scene && !self.attrs.has_scene() {
            bail!(UsageError::new(format!(
                "{}: has no scene stream (prepared with scene_size = 0); prepare with a scene stream for a method \
                 that reads scenes",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Row `i`'s face and scene pixels only (`[m, S, S, 3]`, `[m, S2, S2, 3]`, the scene empty
    /// without a scene stream), decoded.
    pub fn pixels(&self, i: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        let all: Vec<usize> = (0..self.index.count[i]).collect();
        let mut out = (Vec::new(), Vec::new());
        self.each_frame(i, Stream::Face, &all, |_, px| out.0.extend_from_slice(px))?;
        if self.attrs.has_scene() {
            self.each_frame(i, Stream::Scene, &all, |_, px| out.1.extend_from_slice(px))?;
        }
        Ok(out)
    }

    /// Stored frames `which` (positions among clip `i`'s stored frames) of `stream`, each handed
    /// to `each(k, pixels)` in that order, `pixels` one `[S, S, 3]` frame. Only those frames are
    /// read (and decoded, in a JPEG shard), one at a time into one buffer; a position asked for
    /// twice in a row is read once.
    pub(crate) fn each_frame(
        &self,
        i: usize,
        stream: Stream,
        which: &[usize],
        mut each: impl FnMut(usize, &[u8]),
    ) -> Result<()> {
        self.require(stream)?;
        let m = self.index.count[i];
        if let Some(&bad) = which.iter().find(|&&f| f >= m) {
            bail!("{}: stored frame {bad} asked of clip row {i}, which stores {m}", self.path.display());
        }
        let start = self.index.start[i];
        let n = (self.attrs.side(stream).pow(2) * 3) as usize;
        let mut frame = vec![0u8; n];
        let mut held = None;
        for (k, &f) in which.iter().enumerate() {
            if held != Some(f) {
                let row = start + f..start + f + 1;
                match self.attrs.pixels.encoding {
                    Encoding::Raw | Encoding::Gzip => frame.copy_from_slice(&self.rows::<u8>(stream.as_str(), row)?),
                    Encoding::Jpeg => {
                        let file = self.rows::<VarLenArray<u8>>(stream.as_str(), row)?;
                        self.decode_frame(i, stream, f, file[0].as_slice(), &mut frame)?;
                    }
                }
                held = Some(f);
            }
            each(k, &frame);
        }
        Ok(())
    }

    /// Row `i`'s face and scene frames as stored JPEG files (a JPEG shard only; the scene list
    /// is empty without a scene stream).
    pub fn jpeg_frames(&self, i: usize) -> Result<(JpegFrames, JpegFrames)> {
        if self.attrs.pixels.encoding != Encoding::Jpeg {
            bail!("{}: frames are stored {}, not as JPEG", self.path.display(), self.attrs.pixels.encoding.as_str());
        }
        let frames = |name: &str| -> Result<JpegFrames> {
            Ok(self.rows::<VarLenArray<u8>>(name, self.frame_rows(i))?.iter().map(|f| f.as_slice().to_vec()).collect())
        };
        let scene = if self.attrs.has_scene() { frames("scene")? } else { Vec::new() };
        Ok((frames("face")?, scene))
    }

    /// Decodes stored frame `f` of `stream` of row `i` into `out`; an error names shard, clip
    /// and frame.
    fn decode_frame(&self, i: usize, stream: Stream, f: usize, bytes: &[u8], out: &mut [u8]) -> Result<()> {
        jpeg::decode_into(bytes, self.attrs.side(stream), out).map_err(|e| {
            let id = self.clip_ids().ok().and_then(|ids| ids.get(i).cloned()).unwrap_or_default();
            UsageError::new(format!(
                "{}: clip {id} (row {i}), {} frame {f}: not a usable JPEG ({e}); prepare this shard again",
                self.path.display(),
                stream.as_str()
            ))
            .into()
        })
    }

    /// Row `i`'s face box, landmarks and face source of each stored frame, without its pixels.
    pub(crate) fn tracking(&self, i: usize) -> Result<Vec<FrameTrack>> {
        let rows = self.frame_rows(i);
        let boxes: Vec<f32> = self.rows("face_box", rows.clone())?;
        let lms: Vec<f32> = self.rows("landmarks", rows.clone())?;
        let source: Vec<u8> = self.rows("face_source", rows)?;
        Ok(boxes
            .chunks_exact(4)
            .zip(lms.chunks_exact(10))
            .zip(source)
            .map(|((b, l), source)| FrameTrack {
                bbox: [b[0], b[1], b[2], b[3]],
                landmarks: std::array::from_fn(|k| [l[2 * k], l[2 * k + 1]]),
                source: FaceSource::from_code(source),
            })
            .collect())
    }

    /// Row `i`'s tensors.
    pub fn clip(&self, i: usize) -> Result<ClipTensors> {
        let rows = self.frame_rows(i);
        let boxes: Vec<f32> = self.rows("face_box", rows.clone())?;
        let lms: Vec<f32> = self.rows("landmarks", rows.clone())?;
        let size: Vec<u32> = self.rows("frame_size", i..i + 1)?;
        let (face, scene) = self.pixels(i)?;
        Ok(ClipTensors {
            face,
            scene,
            clip_frames: self.index.clip_frames[i],
            frame_index: self.rows("frame_index", rows.clone())?,
            scene_frame: self.rows("scene_frame", rows.clone())?,
            face_box: boxes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
            face_score: self.rows("face_score", rows.clone())?,
            face_source: self.rows("face_source", rows.clone())?,
            landmarks: lms.chunks_exact(10).map(|c| std::array::from_fn(|k| [c[2 * k], c[2 * k + 1]])).collect(),
            shot: self.rows("shot", rows)?,
            frame_size: [size[0], size[1]],
        })
    }
}

/// What tracking left for one stored frame: the face box (NaN where none), the detector's five
/// `[x, y]` points (zeros where it did not run) and where the box came from.
pub struct FrameTrack {
    pub bbox: BoxF,
    pub landmarks: [[f32; 2]; 5],
    pub source: FaceSource,
}

/// A shard's attributes, after checking its schema version.
fn read_attrs(file: &File, path: &Path) -> Result<ShardAttrs> {
    let bad = |m: String| UsageError::new(format!("{}: {m}", path.display()));
    let get_u = |n: &str| attr_u64(file, n, path);
    let get_f = |n: &str| -> Result<f32> {
        file.attr(n).and_then(|a| a.read_scalar::<f32>()).map_err(|e| bad(format!("attribute {n}: {e}")).into())
    };
    let get_s = |n: &str| attr_string(file, n, path);
    let get_l = |n: &str| -> Result<Vec<String>> {
        file.attr(n)
            .and_then(|a| a.read_raw::<VarLenUnicode>())
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .map_err(|e| bad(format!("attribute {n}: {e}")).into())
    };
    let version = get_u("schema_version")?;
    if version == 1 {
        return Err(bad(
            "shard schema version 1: made before shards stored the frames the field's test and training rules \
             need; prepare it again with this dfer"
                .into(),
        )
        .into());
    }
    if version != SCHEMA_VERSION as u64 {
        return Err(bad(format!("shard schema version {version}, this dfer reads {SCHEMA_VERSION}")).into());
    }
    let rows = file
        .attr("manifest_rows")
        .and_then(|a| a.read_raw::<u64>())
        .map_err(|e| bad(format!("attribute manifest_rows: {e}")))?;
    Ok(ShardAttrs {
        dataset: get_s("dataset")?,
        label_names: get_l("label_names")?,
        label_polarity: get_l("label_polarity")?,
        frames: get_u("frames")? as usize,
        store_frames: get_u("store_frames")? as usize,
        face_size: get_u("face_size")? as u32,
        scene_size: get_u("scene_size")? as u32,
        face_crops: get_s("face_crops")?.parse().map_err(|e: String| bad(format!("attribute face_crops: {e}")))?,
        sampling: get_s("sampling")?,
        detector: get_s("detector")?,
        detector_hash: get_s("detector_hash")?,
        mask_mode: get_s("mask_mode")?.parse().map_err(|e: String| bad(format!("attribute mask_mode: {e}")))?,
        mask_scale: get_f("mask_scale")?,
        margin: get_f("margin")?,
        scene_fit: get_s("scene_fit")?.parse().map_err(|e: String| bad(format!("attribute scene_fit: {e}")))?,
        config_hash: get_s("config_hash")?,
        config_toml: get_s("config_toml")?,
        tool_version: get_s("tool_version")?,
        shard_index: get_u("shard_index")? as usize,
        manifest_rows: [*rows.first().unwrap_or(&0) as usize, *rows.get(1).unwrap_or(&0) as usize],
        pixels: pixel_format(file, path)?,
    })
}

/// Checks every dataset's shape against the attributes; returns the clip and frame counts.
fn check_datasets(file: &File, path: &Path, attrs: &ShardAttrs) -> Result<(usize, usize)> {
    let bad = |m: String| UsageError::new(format!("{}: {m}", path.display()));
    let image = |side: u32| match attrs.pixels.encoding {
        Encoding::Raw | Encoding::Gzip => vec![side as usize, side as usize, 3],
        Encoding::Jpeg => vec![],
    };
    let per_clip: [(&str, Vec<usize>); 7] = [
        ("label", vec![]),
        ("clip_id", vec![]),
        ("manifest_row", vec![]),
        ("frame_size", vec![2]),
        ("clip_frames", vec![]),
        ("frame_start", vec![]),
        ("frame_count", vec![]),
    ];
    let mut per_frame: Vec<(&str, Vec<usize>)> = vec![
        ("face", image(attrs.face_size)),
        ("frame_index", vec![]),
        ("scene_frame", vec![]),
        ("face_box", vec![4]),
        ("face_score", vec![]),
        ("face_source", vec![]),
        ("landmarks", vec![5, 2]),
        ("shot", vec![]),
    ];
    if attrs.has_scene() {
        per_frame.push(("scene", image(attrs.scene_size)));
    }
    let rows = |group: &[(&str, Vec<usize>)], what: &str| -> Result<usize> {
        let mut len = None;
        for (name, inner) in group {
            let ds = file.dataset(name).map_err(|_| bad(format!("dataset {name} is missing")))?;
            let shape = ds.shape();
            if shape.len() != inner.len() + 1 || shape[1..] != inner[..] {
                return Err(bad(format!("dataset {name} has shape {shape:?}, expected [{what}, {inner:?}]")).into());
            }
            match len {
                None => len = Some(shape[0]),
                Some(n) if n != shape[0] => {
                    return Err(bad(format!("dataset {name} has {} rows, {} has {n}", shape[0], group[0].0)).into())
                }
                _ => {}
            }
        }
        Ok(len.unwrap_or(0))
    };
    Ok((rows(&per_clip, "clips")?, rows(&per_frame, "frames")?))
}

/// Reads where each clip's frames are and checks that the clips' frame ranges tile the
/// per-frame datasets.
fn read_index(file: &File, path: &Path, len: usize, frames: usize) -> Result<ClipIndex> {
    let bad = |m: String| -> anyhow::Error { UsageError::new(format!("{}: {m}", path.display())).into() };
    let ints = |name: &str| -> Result<Vec<usize>> {
        let v = file.dataset(name).and_then(|d| d.read_raw::<i64>()).map_err(|e| bad(format!("{name}: {e}")))?;
        v.iter().map(|&x| usize::try_from(x).map_err(|_| bad(format!("{name} holds {x}")))).collect()
    };
    let (start, count, clip_frames) = (ints("frame_start")?, ints("frame_count")?, ints("clip_frames")?);
    let mut next = 0;
    for i in 0..len {
        if start[i] != next || count[i] == 0 {
            return Err(bad(format!(
                "clip row {i}: frames {}+{} do not follow row {}'s",
                start[i],
                count[i],
                i.max(1) - 1
            )));
        }
        next += count[i];
    }
    if next != frames {
        return Err(bad(format!("clips hold {next} frames, the per-frame datasets {frames}")));
    }
    let frame_index = file.dataset("frame_index").and_then(|d| d.read_raw::<i32>()).map_err(|e| bad(format!("{e}")))?;
    let face_source = file.dataset("face_source").and_then(|d| d.read_raw::<u8>()).map_err(|e| bad(format!("{e}")))?;
    Ok(ClipIndex { start, count, clip_frames, frame_index, face_source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(index: usize) -> ShardAttrs {
        attrs_with(index, PixelFormat { encoding: Encoding::Gzip, gzip_level: 1, jpeg_quality: 0 })
    }

    fn attrs_with(index: usize, pixels: PixelFormat) -> ShardAttrs {
        ShardAttrs {
            dataset: "dfew".into(),
            label_names: vec!["Happy".into(), "Sad".into()],
            label_polarity: vec!["positive".into(), "negative".into()],
            frames: 2,
            store_frames: 4,
            face_size: 4,
            scene_size: 6,
            face_crops: FaceCrops::Detect,
            sampling: "segment_centres".into(),
            detector: "centerface".into(),
            detector_hash: "abc".into(),
            mask_mode: MaskMode::Fill,
            mask_scale: 1.3,
            margin: 1.25,
            scene_fit: SceneFit::Letterbox,
            config_hash: "h".into(),
            config_toml: "frames = 2".into(),
            tool_version: "0.1.0".into(),
            shard_index: index,
            manifest_rows: [0, 2],
            pixels,
        }
    }

    fn append(w: &mut ShardWriter, a: &ShardAttrs, id: &str, label: usize, row: usize, t: &ClipTensors) {
        let stored = encode_pixels(t, a.pixels, a.face_size, a.scene_size).unwrap();
        w.append(&ShardRow { clip_id: id, label, manifest_row: row, tensors: t, stored: &stored }).unwrap();
    }

    /// A clip of `m` stored frames out of 9, face pixels all `v`.
    fn tensors(v: u8, m: usize) -> ClipTensors {
        let frames: Vec<i32> = (0..m as i32).map(|k| 2 * k).collect();
        ClipTensors {
            face: vec![v; m * 4 * 4 * 3],
            scene: (0..m * 6 * 6 * 3).map(|i| (i % 251) as u8).collect(),
            clip_frames: 9,
            scene_frame: frames.clone(),
            frame_index: frames,
            face_box: (0..m).map(|k| [k as f32, 2.0, 3.0, 4.0]).collect(),
            face_score: vec![0.9; m],
            face_source: (0..m).map(|k| 1 + (k % 2) as u8).collect(),
            landmarks: (0..m).map(|k| [[k as f32 + 0.5; 2]; 5]).collect(),
            shot: (0..m as i32).map(|k| k / 2).collect(),
            frame_size: [640, 360],
        }
    }

    #[test]
    fn clips_of_any_length_round_trip_and_the_rename_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let a = attrs(3);
        let mut w = ShardWriter::create(dir.path(), &a).unwrap();
        assert!(!dir.path().join("00003.h5").exists(), "not visible before finish");
        let (x, y) = (tensors(10, 3), tensors(20, 5));
        append(&mut w, &a, "00001", 1, 0, &x);
        append(&mut w, &a, "vidéo", 0, 1, &y);
        let path = w.finish().unwrap();
        assert_eq!(path, dir.path().join("00003.h5"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let r = ShardReader::open(&path).unwrap();
        assert_eq!(r.len, 2);
        assert_eq!(r.attrs, a);
        assert_eq!(r.labels().unwrap(), vec![1, 0]);
        assert_eq!(r.clip_ids().unwrap(), vec!["00001", "vidéo"]);
        assert_eq!(r.clip(0).unwrap(), x);
        assert_eq!(r.clip(1).unwrap(), y);
        assert_eq!((r.index.start.clone(), r.index.count.clone()), (vec![0, 3], vec![3, 5]));
        assert_eq!(r.index.frames(1), &[0, 2, 4, 6, 8]);
        // Frames chosen by position, a repeated one read once and handed over twice.
        let mut got = vec![];
        r.each_frame(1, Stream::Scene, &[4, 4, 0], |k, px| got.push((k, px.to_vec()))).unwrap();
        let frame = 6 * 6 * 3;
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(got[0].1, y.scene[4 * frame..5 * frame]);
        assert_eq!(got[1].1, got[0].1);
        assert_eq!(got[2].1, y.scene[..frame]);
        let e = r.each_frame(0, Stream::Face, &[3], |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("stored frame 3") && e.contains("stores 3"), "{e}");
    }

    #[test]
    fn a_shard_without_scenes_refuses_scene_reads() {
        let dir = tempfile::tempdir().unwrap();
        let a = ShardAttrs { scene_size: 0, face_crops: FaceCrops::Dataset, ..attrs(0) };
        let mut w = ShardWriter::create(dir.path(), &a).unwrap();
        let t = ClipTensors { scene: vec![], scene_frame: vec![-1; 2], ..tensors(5, 2) };
        append(&mut w, &a, "x", 0, 0, &t);
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        assert_eq!(r.attrs.face_crops, FaceCrops::Dataset);
        assert_eq!(r.clip(0).unwrap(), t);
        let e = r.each_frame(0, Stream::Scene, &[0], |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("no scene stream"), "{e}");
    }

    #[test]
    fn bad_clips_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let a = attrs(0);
        let mut w = ShardWriter::create(dir.path(), &a).unwrap();
        let mut t = tensors(1, 3);
        t.frame_index = vec![4, 2, 6];
        let stored = encode_pixels(&t, a.pixels, 4, 6).unwrap();
        let row = ShardRow { clip_id: "x", label: 0, manifest_row: 0, tensors: &t, stored: &stored };
        assert!(format!("{:#}", w.append(&row).unwrap_err()).contains("must ascend"));
        t.frame_index = vec![0, 2, 4];
        t.shot.pop();
        let row = ShardRow { clip_id: "x", label: 0, manifest_row: 0, tensors: &t, stored: &stored };
        assert!(format!("{:#}", w.append(&row).unwrap_err()).contains("per-frame records"));
    }

    #[test]
    fn same_rows_give_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = vec![];
        for sub in ["a", "b"] {
            let d = dir.path().join(sub);
            std::fs::create_dir(&d).unwrap();
            let a = attrs_with(0, PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 95 });
            let mut w = ShardWriter::create(&d, &a).unwrap();
            append(&mut w, &a, "x", 0, 0, &tensors(1, 4));
            paths.push(w.finish().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert!(std::fs::read(&paths[0]).unwrap() == std::fs::read(&paths[1]).unwrap());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000.h5");
        std::fs::write(&p, b"not hdf5").unwrap();
        let e = ShardReader::open(&p).err().unwrap().to_string();
        assert!(e.contains("00000.h5") && e.contains("not a readable HDF5 shard"), "{e}");
        // A shard of the first schema is refused with what to do.
        let a = attrs(0);
        let mut w = ShardWriter::create(dir.path(), &a).unwrap();
        append(&mut w, &a, "x", 0, 0, &tensors(1, 2));
        let path = w.finish().unwrap();
        File::open_rw(&path).unwrap().attr("schema_version").unwrap().write_scalar(&1u64).unwrap();
        let e = ShardReader::open(&path).err().unwrap().to_string();
        assert!(e.contains("schema version 1") && e.contains("prepare it again"), "{e}");
    }

    /// A JPEG shard reads back within JPEG's error, every other dataset exactly; a raw one exactly.
    #[test]
    fn jpeg_and_raw_shards_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = attrs_with(0, PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 95 });
        let mut w = ShardWriter::create(dir.path(), &jpeg).unwrap();
        let a = tensors(100, 3);
        append(&mut w, &jpeg, "00001", 1, 0, &a);
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        assert_eq!(r.attrs.pixels, jpeg.pixels);
        let back = r.clip(0).unwrap();
        assert_eq!(ClipTensors { face: a.face.clone(), scene: a.scene.clone(), ..back.clone() }, a, "metadata exact");
        let err = |x: &[u8], y: &[u8]| {
            x.iter().zip(y).map(|(p, q)| (*p as f64 - *q as f64).abs()).sum::<f64>() / x.len() as f64
        };
        assert_eq!(back.face.len(), a.face.len());
        assert!(err(&back.face, &a.face) < 2.0, "flat face: {}", err(&back.face, &a.face));
        assert!(err(&back.scene, &a.scene) < 40.0, "noise-like scene: {}", err(&back.scene, &a.scene));
        let (faces, _) = r.jpeg_frames(0).unwrap();
        assert!(faces.len() == 3 && faces.iter().all(|f| f.starts_with(&[0xff, 0xd8])), "frames are JPEG files");

        let raw_dir = dir.path().join("raw");
        std::fs::create_dir(&raw_dir).unwrap();
        let raw = attrs_with(0, PixelFormat::RAW);
        let mut w = ShardWriter::create(&raw_dir, &raw).unwrap();
        append(&mut w, &raw, "00001", 1, 0, &a);
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        assert_eq!(r.clip(0).unwrap(), a);
        assert!(r.jpeg_frames(0).is_err());
    }

    #[test]
    fn a_broken_jpeg_names_shard_clip_and_frame() {
        let dir = tempfile::tempdir().unwrap();
        let a = attrs_with(0, PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 90 });
        let mut w = ShardWriter::create(dir.path(), &a).unwrap();
        let t = tensors(7, 2);
        let mut stored = encode_pixels(&t, a.pixels, 4, 6).unwrap();
        if let StoredPixels::Jpeg { scene, .. } = &mut stored {
            scene[1].truncate(20);
        }
        w.append(&ShardRow { clip_id: "00042", label: 0, manifest_row: 0, tensors: &t, stored: &stored }).unwrap();
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        let e = format!("{:#}", r.pixels(0).unwrap_err());
        assert!(e.contains("00000.h5") && e.contains("clip 00042") && e.contains("scene frame 1"), "{e}");
    }
}
