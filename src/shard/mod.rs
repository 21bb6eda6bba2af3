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
use crate::face::geometry::{MaskMode, SceneFit};
use crate::face::BoxF;
use crate::text_enum::text_enum;

/// One of a clip's two pixel streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Face,
    Scene,
}

impl Stream {
    /// The stream's dataset name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stream::Face => "face",
            Stream::Scene => "scene",
        }
    }
}

/// Shard schema version, stored as the `schema_version` attribute.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// File name of shard `index`.
pub(crate) fn shard_name(index: usize) -> String {
    format!("{index:05}.h5")
}

text_enum! {
    /// How a shard stores face and scene pixels (attribute `encoding`; shards without it are raw).
    pub enum Encoding("pixel encoding") {
        /// `face` / `scene` uint8 `[N, T, S, S, 3]`, uncompressed.
        Raw = "raw",
        /// The same arrays with HDF5's built-in shuffle + deflate (lossless, no plugins).
        Gzip = "gzip",
        /// `face` / `scene` variable-length uint8 `[N, T]`: one baseline JPEG per frame.
        Jpeg = "jpeg",
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
    pub(crate) const RAW: PixelFormat = PixelFormat { encoding: Encoding::Raw, gzip_level: 0, jpeg_quality: 0 };
}

/// One stream's frames of a clip, each a JPEG file.
pub(crate) type JpegFrames = Vec<Vec<u8>>;

/// A clip's face and scene pixels as the shard stores them: the raw arrays are taken from the
/// clip's tensors, JPEG frames are encoded beforehand (`encode_pixels`, on the prep workers).
pub(crate) enum StoredPixels {
    Raw,
    Jpeg { face: JpegFrames, scene: JpegFrames },
}

/// Encodes a clip's frames for a shard of `format` (`[T, S, S, 3]` each stream).
#[cfg(feature = "media")]
pub(crate) fn encode_pixels(
    t: &ClipTensors,
    format: PixelFormat,
    face_size: u32,
    scene_size: u32,
) -> Result<StoredPixels> {
    if format.encoding != Encoding::Jpeg {
        return Ok(StoredPixels::Raw);
    }
    let encode = |pixels: &[u8], side: u32| -> Result<JpegFrames> {
        let frame = (side * side * 3) as usize;
        pixels.chunks_exact(frame).map(|f| jpeg::encode(f, side, format.jpeg_quality)).collect()
    };
    Ok(StoredPixels::Jpeg { face: encode(&t.face, face_size)?, scene: encode(&t.scene, scene_size)? })
}

/// Shard-level attributes: everything needed to know how the tensors were made.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardAttrs {
    pub dataset: String,
    pub label_names: Vec<String>,
    /// Polarity name of each label, in label order.
    pub label_polarity: Vec<String>,
    /// Frames the model sees (T) and frames stored per clip.
    pub frames: usize,
    pub store_frames: usize,
    pub face_size: u32,
    pub scene_size: u32,
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
}

/// The tensors of one clip, in shard layout (T = stored frames).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTensors {
    /// `[T, S, S, 3]` uint8.
    pub face: Vec<u8>,
    /// `[T, S2, S2, 3]` uint8.
    pub scene: Vec<u8>,
    pub frame_index: Vec<i32>,
    pub face_box: Vec<BoxF>,
    pub face_score: Vec<f32>,
    pub face_source: Vec<u8>,
    pub landmarks: Vec<[[f32; 2]; 5]>,
    /// Shot of each stored frame (0, 1, … at each cut). Empty when read from a shard written
    /// before shots were recorded.
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
    /// The frames encoded for this shard's pixel format (`encode_pixels`).
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
    n: usize,
    t: usize,
    encoding: Encoding,
    columns: Columns,
}

/// The open datasets of a shard being written.
struct Columns {
    face: Dataset,
    scene: Dataset,
    label: Dataset,
    clip_id: Dataset,
    manifest_row: Dataset,
    frame_index: Dataset,
    face_box: Dataset,
    face_score: Dataset,
    face_source: Dataset,
    landmarks: Dataset,
    frame_size: Dataset,
    shot: Dataset,
}

/// A dataset that grows along its first axis, `rows` clips per chunk (image datasets take one
/// clip per chunk, the small per-clip ones 64).
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

impl ShardWriter {
    /// Starts shard `attrs.shard_index` in `dir` under a temporary name.
    pub(crate) fn create(dir: &Path, attrs: &ShardAttrs) -> Result<ShardWriter> {
        let path = dir.join(shard_name(attrs.shard_index));
        let tmp = crate::atomic::tmp_path(&path);
        let file = File::with_options()
            .with_fcpl(|p| p.obj_track_times(false))
            .create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        let (t, s, s2) = (attrs.store_frames, attrs.face_size as usize, attrs.scene_size as usize);
        let pixels = |name: &str, side: usize| match attrs.pixels.encoding {
            Encoding::Raw => growable::<u8>(&file, name, &[t, side, side, 3], 1, 0),
            Encoding::Gzip => growable::<u8>(&file, name, &[t, side, side, 3], 1, attrs.pixels.gzip_level),
            Encoding::Jpeg => growable::<VarLenArray<u8>>(&file, name, &[t], 1, 0),
        };
        let columns = Columns {
            face: pixels("face", s)?,
            scene: pixels("scene", s2)?,
            label: growable::<i64>(&file, "label", &[], 64, 0)?,
            clip_id: growable::<VarLenUnicode>(&file, "clip_id", &[], 64, 0)?,
            manifest_row: growable::<i64>(&file, "manifest_row", &[], 64, 0)?,
            frame_index: growable::<i32>(&file, "frame_index", &[t], 64, 0)?,
            face_box: growable::<f32>(&file, "face_box", &[t, 4], 64, 0)?,
            face_score: growable::<f32>(&file, "face_score", &[t], 64, 0)?,
            face_source: growable::<u8>(&file, "face_source", &[t], 64, 0)?,
            landmarks: growable::<f32>(&file, "landmarks", &[t, 5, 2], 64, 0)?,
            frame_size: growable::<u32>(&file, "frame_size", &[2], 64, 0)?,
            shot: growable::<i32>(&file, "shot", &[t], 64, 0)?,
        };
        let w = ShardWriter { file, tmp, path, n: 0, t, encoding: attrs.pixels.encoding, columns };
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
        let (n, t) = (self.n, self.t);
        let x = row.tensors;
        if x.frame_index.len() != t || x.shot.len() != t {
            bail!(
                "clip {} has {} frames ({} shot ids), the shard stores {t}",
                row.clip_id,
                x.frame_index.len(),
                x.shot.len()
            );
        }
        fn put<T: H5Type>(ds: &Dataset, n: usize, data: &[T]) -> Result<()> {
            let mut shape = ds.shape();
            shape[0] = n + 1;
            ds.resize(shape.clone())?;
            shape[0] = 1;
            let view = ArrayView::from_shape(IxDyn(&shape), data)?;
            let mut sel: Vec<ndarray::SliceInfoElem> = vec![(n..n + 1).into()];
            sel.extend(shape[1..].iter().map(|_| ndarray::SliceInfoElem::from(..)));
            ds.write_slice(&view, ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from(sel)?)?;
            Ok(())
        }
        let c = &self.columns;
        match (self.encoding, row.stored) {
            (Encoding::Jpeg, StoredPixels::Jpeg { face, scene }) => {
                let vl = |frames: &[Vec<u8>]| frames.iter().map(|f| VarLenArray::from_slice(f)).collect::<Vec<_>>();
                put(&c.face, n, &vl(face))?;
                put(&c.scene, n, &vl(scene))?;
            }
            (Encoding::Raw | Encoding::Gzip, StoredPixels::Raw) => {
                put(&c.face, n, &x.face)?;
                put(&c.scene, n, &x.scene)?;
            }
            (e, _) => bail!("clip {}: pixels not encoded for this {} shard", row.clip_id, e.as_str()),
        }
        put(&c.label, n, &[row.label as i64])?;
        put(&c.clip_id, n, &[vlu(row.clip_id)?])?;
        put(&c.manifest_row, n, &[row.manifest_row as i64])?;
        put(&c.frame_index, n, &x.frame_index)?;
        put(&c.face_box, n, x.face_box.as_flattened())?;
        put(&c.face_score, n, &x.face_score)?;
        put(&c.face_source, n, &x.face_source)?;
        let lm: Vec<f32> = x.landmarks.iter().flat_map(|l| l.iter().flatten().copied()).collect();
        put(&c.landmarks, n, &lm)?;
        put(&c.frame_size, n, &x.frame_size)?;
        put(&c.shot, n, &x.shot)?;
        self.n += 1;
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

/// Read access to a complete shard.
pub struct ShardReader {
    pub path: PathBuf,
    file: File,
    pub attrs: ShardAttrs,
    pub len: usize,
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

/// The `encoding`, `gzip_level` and `jpeg_quality` attributes (absent: a raw shard from before).
fn pixel_format(file: &File, path: &Path) -> Result<PixelFormat> {
    if file.attr("encoding").is_err() {
        return Ok(PixelFormat::RAW);
    }
    let encoding = attr_string(file, "encoding", path)?
        .parse::<Encoding>()
        .map_err(|e| UsageError::new(format!("{}: attribute encoding: {e}", path.display())))?;
    let level = |name: &str| -> Result<u8> { Ok(attr_u64(file, name, path)?.min(100) as u8) };
    Ok(PixelFormat { encoding, gzip_level: level("gzip_level")?, jpeg_quality: level("jpeg_quality")? })
}

impl ShardReader {
    /// Opens a shard, checking its schema version and datasets.
    pub fn open(path: &Path) -> Result<ShardReader> {
        let file = File::open(path)
            .map_err(|e| UsageError::new(format!("{}: not a readable HDF5 shard: {e}", path.display())))?;
        let attrs = read_attrs(&file, path)?;
        let len = check_datasets(&file, path, &attrs)?;
        Ok(ShardReader { path: path.to_path_buf(), file, attrs, len })
    }

    fn ds(&self, name: &str) -> Result<Dataset> {
        Ok(self.file.dataset(name)?)
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

    /// Row `i` of dataset `name`, flattened.
    fn row<T: H5Type + Clone>(&self, name: &str, i: usize) -> Result<Vec<T>> {
        let ds = self.ds(name)?;
        let shape = ds.shape();
        let mut sel: Vec<ndarray::SliceInfoElem> = vec![(i..i + 1).into()];
        sel.extend(shape[1..].iter().map(|_| ndarray::SliceInfoElem::from(..)));
        let a: ndarray::ArrayD<T> = ds
            .read_slice(ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from(sel)?)
            .with_context(|| format!("{}: reading {name} row {i}", self.path.display()))?;
        Ok(a.into_raw_vec_and_offset().0)
    }

    /// Row `i`'s face and scene pixels only (`[T, S, S, 3]`, `[T, S2, S2, 3]`), decoded, for
    /// training.
    pub fn pixels(&self, i: usize) -> Result<(Vec<u8>, Vec<u8>)> {
        match self.attrs.pixels.encoding {
            Encoding::Raw | Encoding::Gzip => Ok((self.row("face", i)?, self.row("scene", i)?)),
            Encoding::Jpeg => {
                let (face, scene) = self.jpeg_frames(i)?;
                Ok((self.decode(i, Stream::Face, &face)?, self.decode(i, Stream::Scene, &scene)?))
            }
        }
    }

    /// Frames `which` (stored-frame indices) of row `i`'s `stream`, each handed to `each(k,
    /// pixels)` in that order, `pixels` one `[S, S, 3]` frame. A JPEG shard decodes only those
    /// frames, one at a time into one buffer, so a clip's frames are never all in memory at once.
    pub(crate) fn each_frame(
        &self,
        i: usize,
        stream: Stream,
        which: &[usize],
        mut each: impl FnMut(usize, &[u8]),
    ) -> Result<()> {
        let t = self.attrs.store_frames;
        if let Some(&bad) = which.iter().find(|&&f| f >= t) {
            bail!("{}: frame {bad} asked of a clip with {t} stored frames", self.path.display());
        }
        let side = self.attrs.side(stream);
        let n = (side * side * 3) as usize;
        match self.attrs.pixels.encoding {
            Encoding::Raw | Encoding::Gzip => {
                let px: Vec<u8> = self.row(stream.name(), i)?;
                which.iter().enumerate().for_each(|(k, &f)| each(k, &px[f * n..(f + 1) * n]));
            }
            Encoding::Jpeg => {
                let files = self.row::<VarLenArray<u8>>(stream.name(), i)?;
                let mut frame = vec![0u8; n];
                for (k, &f) in which.iter().enumerate() {
                    self.decode_frame(i, stream, f, files[f].as_slice(), &mut frame)?;
                    each(k, &frame);
                }
            }
        }
        Ok(())
    }

    /// Row `i`'s face and scene frames as stored JPEG files (a JPEG shard only).
    pub fn jpeg_frames(&self, i: usize) -> Result<(JpegFrames, JpegFrames)> {
        if self.attrs.pixels.encoding != Encoding::Jpeg {
            bail!("{}: frames are stored {}, not as JPEG", self.path.display(), self.attrs.pixels.encoding.as_str());
        }
        let frames = |name: &str| -> Result<JpegFrames> {
            Ok(self.row::<VarLenArray<u8>>(name, i)?.iter().map(|f| f.as_slice().to_vec()).collect())
        };
        Ok((frames("face")?, frames("scene")?))
    }

    /// Decodes the JPEG frames of `stream` of row `i` into `[T, side, side, 3]`.
    fn decode(&self, i: usize, stream: Stream, frames: &[Vec<u8>]) -> Result<Vec<u8>> {
        let side = self.attrs.side(stream);
        let n = (side * side * 3) as usize;
        let mut out = vec![0u8; frames.len() * n];
        for (f, (bytes, dst)) in frames.iter().zip(out.chunks_exact_mut(n)).enumerate() {
            self.decode_frame(i, stream, f, bytes, dst)?;
        }
        Ok(out)
    }

    /// Decodes stored frame `f` of `stream` of row `i` into `out`; an error names shard, clip
    /// and frame.
    fn decode_frame(&self, i: usize, stream: Stream, f: usize, bytes: &[u8], out: &mut [u8]) -> Result<()> {
        jpeg::decode_into(bytes, self.attrs.side(stream), out).map_err(|e| {
            let id = self.clip_ids().ok().and_then(|ids| ids.get(i).cloned()).unwrap_or_default();
            UsageError::new(format!(
                "{}: clip {id} (row {i}), {} frame {f}: not a usable JPEG ({e}); prepare this shard again",
                self.path.display(),
                stream.name()
            ))
            .into()
        })
    }

    /// Row `i`'s tensors.
    pub fn clip(&self, i: usize) -> Result<ClipTensors> {
        let boxes: Vec<f32> = self.row("face_box", i)?;
        let lms: Vec<f32> = self.row("landmarks", i)?;
        let size: Vec<u32> = self.row("frame_size", i)?;
        let (face, scene) = self.pixels(i)?;
        Ok(ClipTensors {
            face,
            scene,
            frame_index: self.row("frame_index", i)?,
            face_box: boxes.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect(),
            face_score: self.row("face_score", i)?,
            face_source: self.row("face_source", i)?,
            landmarks: lms.chunks_exact(10).map(|c| std::array::from_fn(|k| [c[2 * k], c[2 * k + 1]])).collect(),
            shot: if self.file.link_exists("shot") { self.row("shot", i)? } else { Vec::new() },
            frame_size: [size[0], size[1]],
        })
    }
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

/// Checks every dataset's shape against the attributes; returns the clip count.
fn check_datasets(file: &File, path: &Path, attrs: &ShardAttrs) -> Result<usize> {
    let bad = |m: String| UsageError::new(format!("{}: {m}", path.display()));
    let (t, s, s2) = (attrs.store_frames, attrs.face_size as usize, attrs.scene_size as usize);
    let image = |side: usize| match attrs.pixels.encoding {
        Encoding::Raw | Encoding::Gzip => vec![t, side, side, 3],
        Encoding::Jpeg => vec![t],
    };
    let expect: [(&str, Vec<usize>); 11] = [
        ("face", image(s)),
        ("scene", image(s2)),
        ("label", vec![]),
        ("clip_id", vec![]),
        ("manifest_row", vec![]),
        ("frame_index", vec![t]),
        ("face_box", vec![t, 4]),
        ("face_score", vec![t]),
        ("face_source", vec![t]),
        ("landmarks", vec![t, 5, 2]),
        ("frame_size", vec![2]),
    ];
    let mut len = None;
    for (name, inner) in expect {
        let ds = file.dataset(name).map_err(|_| bad(format!("dataset {name} is missing")))?;
        let shape = ds.shape();
        if shape.len() != inner.len() + 1 || shape[1..] != inner[..] {
            return Err(bad(format!("dataset {name} has shape {shape:?}, expected [N, {inner:?}]")).into());
        }
        match len {
            None => len = Some(shape[0]),
            Some(n) if n != shape[0] => {
                return Err(bad(format!("dataset {name} has {} rows, face has {n}", shape[0])).into())
            }
            _ => {}
        }
    }
    let len = len.unwrap_or(0);
    // `shot` came later: a shard without it still reads; one with it must fit.
    if let Ok(ds) = file.dataset("shot") {
        if ds.shape() != [len, t] {
            return Err(bad(format!("dataset shot has shape {:?}, expected [{len}, {t}]", ds.shape())).into());
        }
    }
    Ok(len)
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
            store_frames: 2,
            face_size: 4,
            scene_size: 6,
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

    fn append(w: &mut ShardWriter, fmt: PixelFormat, id: &str, label: usize, row: usize, t: &ClipTensors) {
        let stored = encode_pixels(t, fmt, 4, 6).unwrap();
        w.append(&ShardRow { clip_id: id, label, manifest_row: row, tensors: t, stored: &stored }).unwrap();
    }

    fn tensors(v: u8) -> ClipTensors {
        ClipTensors {
            face: vec![v; 2 * 4 * 4 * 3],
            scene: (0..2 * 6 * 6 * 3).map(|i| (i % 251) as u8).collect(),
            frame_index: vec![3, 7],
            face_box: vec![[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]],
            face_score: vec![0.9, 0.0],
            face_source: vec![1, 2],
            landmarks: vec![[[0.5; 2]; 5], [[1.5; 2]; 5]],
            shot: vec![0, 1],
            frame_size: [640, 360],
        }
    }

    #[test]
    fn write_read_round_trip_and_atomic_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path(), &attrs(3)).unwrap();
        assert!(!dir.path().join("00003.h5").exists(), "not visible before finish");
        let (a, b) = (tensors(10), tensors(20));
        append(&mut w, attrs(3).pixels, "00001", 1, 0, &a);
        append(&mut w, attrs(3).pixels, "vidéo", 0, 1, &b);
        let path = w.finish().unwrap();
        assert_eq!(path, dir.path().join("00003.h5"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let r = ShardReader::open(&path).unwrap();
        assert_eq!(r.len, 2);
        assert_eq!(r.attrs, attrs(3));
        assert_eq!(r.labels().unwrap(), vec![1, 0]);
        assert_eq!(r.clip_ids().unwrap(), vec!["00001", "vidéo"]);
        assert_eq!(r.clip(0).unwrap(), a);
        assert_eq!(r.clip(1).unwrap(), b);
    }

    #[test]
    fn shards_from_before_the_shot_dataset_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path(), &attrs(0)).unwrap();
        append(&mut w, attrs(0).pixels, "x", 0, 0, &tensors(1));
        let path = w.finish().unwrap();
        File::open_rw(&path).unwrap().unlink("shot").unwrap();
        let c = ShardReader::open(&path).unwrap().clip(0).unwrap();
        assert!(c.shot.is_empty(), "no shot record: empty, not made up");
        assert_eq!(c.face_source, tensors(1).face_source);
    }

    #[test]
    fn same_rows_give_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = vec![];
        for sub in ["a", "b"] {
            let d = dir.path().join(sub);
            std::fs::create_dir(&d).unwrap();
            let jpeg = PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 95 };
            let mut w = ShardWriter::create(&d, &attrs_with(0, jpeg)).unwrap();
            append(&mut w, jpeg, "x", 0, 0, &tensors(1));
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
    }

    /// A JPEG shard reads back within JPEG's error, every other dataset exactly; a raw shard
    /// written before encodings existed (no `encoding` attribute) still reads as raw.
    #[test]
    fn jpeg_and_raw_shards_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 95 };
        let mut w = ShardWriter::create(dir.path(), &attrs_with(0, jpeg)).unwrap();
        let a = tensors(100);
        append(&mut w, jpeg, "00001", 1, 0, &a);
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        assert_eq!(r.attrs.pixels, jpeg);
        let back = r.clip(0).unwrap();
        assert_eq!(ClipTensors { face: a.face.clone(), scene: a.scene.clone(), ..back.clone() }, a, "metadata exact");
        let err = |x: &[u8], y: &[u8]| {
            x.iter().zip(y).map(|(p, q)| (*p as f64 - *q as f64).abs()).sum::<f64>() / x.len() as f64
        };
        assert_eq!(back.face.len(), a.face.len());
        assert!(err(&back.face, &a.face) < 2.0, "flat face: {}", err(&back.face, &a.face));
        assert!(err(&back.scene, &a.scene) < 40.0, "noise-like scene: {}", err(&back.scene, &a.scene));
        let (faces, _) = r.jpeg_frames(0).unwrap();
        assert!(faces.iter().all(|f| f.starts_with(&[0xff, 0xd8])), "frames are JPEG files");

        let raw_dir = dir.path().join("raw");
        std::fs::create_dir(&raw_dir).unwrap();
        let mut w = ShardWriter::create(&raw_dir, &attrs_with(0, PixelFormat::RAW)).unwrap();
        append(&mut w, PixelFormat::RAW, "00001", 1, 0, &a);
        let path = w.finish().unwrap();
        let f = File::open_rw(&path).unwrap();
        for name in ["encoding", "gzip_level", "jpeg_quality"] {
            f.delete_attr(name).unwrap();
        }
        drop(f);
        let r = ShardReader::open(&path).unwrap();
        assert_eq!(r.attrs.pixels, PixelFormat::RAW);
        assert_eq!(r.clip(0).unwrap(), a);
        assert!(r.jpeg_frames(0).is_err());
    }

    #[test]
    fn a_broken_jpeg_names_shard_clip_and_frame() {
        let dir = tempfile::tempdir().unwrap();
        let jpeg = PixelFormat { encoding: Encoding::Jpeg, gzip_level: 0, jpeg_quality: 90 };
        let mut w = ShardWriter::create(dir.path(), &attrs_with(0, jpeg)).unwrap();
        let t = tensors(7);
        let mut stored = encode_pixels(&t, jpeg, 4, 6).unwrap();
        if let StoredPixels::Jpeg { scene, .. } = &mut stored {
            scene[1].truncate(20);
        }
        w.append(&ShardRow { clip_id: "00042", label: 0, manifest_row: 0, tensors: &t, stored: &stored }).unwrap();
        let r = ShardReader::open(&w.finish().unwrap()).unwrap();
        let e = format!("{:#}", r.pixels(0).unwrap_err());
        assert!(e.contains("00000.h5") && e.contains("clip 00042") && e.contains("scene frame 1"), "{e}");
    }
}
