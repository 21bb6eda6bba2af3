//! Bad input through `dfer prep` via the generic CSV adapter: a 4K video, odd-sized frames, an
//! audio-only file, garbage bytes and a missing file are each recorded on their clip's row,
//! and the good clip still lands in the shard.

use crate::common;

use std::path::Path;

use common::{dfer, dfer_expect, ffmpeg};
use dfer::manifest::read_parquet;
use dfer::shard::ShardReader;

fn astronaut() -> image::RgbImage {
    image::open(dfer::assets::path(dfer::assets::Asset::Astronaut).unwrap()).unwrap().to_rgb8()
}

fn write_dataset(root: &Path) {
    // Odd-sized frames (333x251) with a real face.
    let frames = root.join("odd");
    std::fs::create_dir_all(&frames).unwrap();
    let img = image::imageops::resize(&astronaut(), 333, 251, image::imageops::FilterType::Triangle);
    for i in 1..=20 {
        img.save(frames.join(format!("{i}.jpg"))).unwrap();
    }
    // A 4K clip (5 frames, no face in it).
    let p4k = root.join("uhd.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=3840x2160:rate=25",
        "-frames:v",
        "5",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        p4k.to_str().unwrap(),
    ]);
    // Audio only.
    let audio = root.join("audio.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", audio.to_str().unwrap()]);
    // Garbage with a video extension.
    std::fs::write(root.join("garbage.mp4"), (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>())
        .unwrap();
    std::fs::write(
        root.join("labels.csv"),
        "path,label,split\nodd,positive,train\nuhd.mp4,neutral,train\naudio.mp4,negative,test\ngarbage.mp4,negative,test\nmissing.mp4,neutral,test\n",
    )
    .unwrap();
}

#[test]
fn bad_clips_are_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    write_dataset(&root);
    let desc = dir.path().join("generic.toml");
    std::fs::copy("data-manifests/generic-csv.toml", &desc).unwrap();
    let manifest = dir.path().join("clips.parquet");
    dfer_expect(
        &[
            "manifest",
            "--dataset",
            desc.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "-o",
            manifest.to_str().unwrap(),
        ],
        1,
    );
    let out = dir.path().join("prep");
    let o = dfer(&["prep", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let (df, _) = read_parquet(&out.join("prep.parquet")).unwrap();
    let ids: Vec<String> =
        df.column("clip_id").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect();
    let st: Vec<String> = df.column("status").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect();
    let err: Vec<String> =
        df.column("error").unwrap().str().unwrap().iter().map(|s| s.unwrap_or("").to_string()).collect();
    let by: std::collections::BTreeMap<&str, (&str, &str)> =
        ids.iter().zip(st.iter().zip(err.iter())).map(|(i, (s, e))| (i.as_str(), (s.as_str(), e.as_str()))).collect();
    assert_eq!(by["odd"].0, "ok", "{:?}", by["odd"]);
    assert_eq!(by["uhd"].0, "no_face", "a 4K test pattern has no face: {:?}", by["uhd"]);
    assert_eq!(by["audio"].0, "unreadable");
    assert!(by["audio"].1.contains("audio.mp4") && by["audio"].1.contains("no video stream"), "{:?}", by["audio"]);
    assert_eq!(by["garbage"].0, "unreadable");
    assert!(by["garbage"].1.contains("garbage.mp4"), "{:?}", by["garbage"]);
    assert_eq!(by["missing"].0, "missing");
    let shard = ShardReader::open(&out.join("shards/00000.h5")).unwrap();
    // Every decodable clip is written: the test pattern without a face from the centre fallback.
    assert_eq!(shard.clip_ids().unwrap(), vec!["odd", "uhd"]);
    assert!(shard.clip(1).unwrap().face_source.iter().all(|&s| s == 3), "uhd: every frame the fallback");
    let c = shard.clip(0).unwrap();
    assert_eq!(c.frame_size, [333, 251]);
    // Default det_every = 4: detected at every 4th stored frame and the last, interpolated between.
    let m = c.frame_index.len();
    let want: Vec<u8> = (0..m).map(|i| if i % 4 == 0 || i == m - 1 { 1 } else { 2 }).collect();
    assert_eq!(c.face_source, want, "the face is found in every odd-sized frame the detector saw");
}
