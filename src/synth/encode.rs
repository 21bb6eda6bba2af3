//! Encoding synthetic clips with the `ffmpeg` command-line tool (H.264 in mp4): raw RGB frames
//! on stdin, then optional post-processing (rotation tag, variable frame rate, truncation).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use image::RgbImage;

fn run(cmd: &mut Command, what: &Path) -> Result<()> {
    let out =
        cmd.stdin(Stdio::null()).output().with_context(|| "cannot run `ffmpeg`: install it with scripts/setup.sh")?;
    if !out.status.success() {
        bail!("{}: ffmpeg failed: {}", what.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn base_args(cmd: &mut Command) -> &mut Command {
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
}

/// H.264 at constant rate factor `crf` (20 for ordinary clips; higher is coarser), bit-exact.
fn output_args(cmd: &mut Command, crf: u32) -> &mut Command {
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        &crf.to_string(),
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
    ])
    .args(["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-movflags", "+faststart"])
}

/// A running `ffmpeg` encoder fed raw RGB frames of one size on stdin (H.264 mp4).
pub(crate) struct Encoder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::path::PathBuf,
}

impl Encoder {
    /// Starts encoding `w`x`h` (even) frames at `fps` into `out` at rate factor `crf`.
    pub(crate) fn start(w: u32, h: u32, fps: u32, crf: u32, out: &Path) -> Result<Encoder> {
        let mut cmd = Command::new("ffmpeg");
        base_args(&mut cmd).args([
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            &format!("{w}x{h}"),
            "-r",
            &fps.to_string(),
            "-i",
            "-",
        ]);
        output_args(&mut cmd, crf).arg(out);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `ffmpeg`: install it with scripts/setup.sh")?;
        let stdin = child.stdin.take();
        Ok(Encoder { child, stdin, out: out.to_path_buf() })
    }

    pub(crate) fn push(&mut self, frame: &RgbImage) -> Result<()> {
        let stdin = self.stdin.as_mut().expect("open until finish");
        stdin
            .write_all(frame.as_raw())
            .with_context(|| format!("{}: ffmpeg stopped reading frames", self.out.display()))
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let res = self.child.wait_with_output()?;
        if !res.status.success() {
            bail!("{}: ffmpeg failed: {}", self.out.display(), String::from_utf8_lossy(&res.stderr).trim());
        }
        Ok(())
    }
}

/// Rewrites `path` with a `rotate` tag (stream copy: FFmpeg 5.1 writes the display matrix only then).
pub(crate) fn tag_rotation(path: &Path, degrees: i32) -> Result<()> {
    let tmp = path.with_extension("rot.mp4");
    let mut cmd = Command::new("ffmpeg");
    base_args(&mut cmd)
        .arg("-i")
        .arg(path)
        .args(["-c", "copy", "-metadata:s:v:0", &format!("rotate={degrees}")])
        .arg(&tmp);
    run(&mut cmd, path)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Re-times `path` so frames `0..change` keep their rate and later frames come at half of it
/// (a variable-frame-rate file). Returns the presentation time of every frame in seconds.
pub(crate) fn make_vfr(path: &Path, fps: u32, n_frames: usize, change: usize) -> Result<Vec<f64>> {
    let tmp = path.with_extension("vfr.mp4");
    let expr = format!("if(lt(N,{change}),N,{change}+(N-{change})*2)/({fps}*TB)");
    let mut cmd = Command::new("ffmpeg");
    base_args(&mut cmd).arg("-i").arg(path).args([
        "-vf",
        &format!("setpts='{expr}'"),
        "-fps_mode",
        "vfr",
        "-enc_time_base",
        &format!("1/{}", fps * 2),
    ]);
    output_args(&mut cmd, 20).arg(&tmp);
    run(&mut cmd, path)?;
    std::fs::rename(&tmp, path)?;
    Ok((0..n_frames)
        .map(|n| if n < change { n as f64 } else { (change + (n - change) * 2) as f64 } / fps as f64)
        .collect())
}

/// Cuts `path` to `fraction` of its size (a truncated download).
pub(crate) fn truncate(path: &Path, fraction: f64) -> Result<()> {
    let len = std::fs::metadata(path)?.len();
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len((len as f64 * fraction) as u64)?;
    Ok(())
}
