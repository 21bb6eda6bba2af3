//! CLIP weights: the committed tiny CLIP made with `transformers` (`bench/make_clip_fixture.py`)
//! gives the same image and text features in dfer, read from its folder or fetched through a
//! local server that answers like the Hugging Face Hub (302 to a CDN with `x-linked-etag`,
//! `x-repo-commit`, byte ranges), into Hugging Face's cache layout; a corrupt or truncated
//! download is refused and leaves nothing in the cache; a cached checkpoint needs no network.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha1::Sha1;
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "tiny-org/clip-tiny";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

/// How the fake hub serves the large file.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// Other bytes than the checksum says.
    Corrupt,
    /// Announces the full length, sends half, closes.
    Truncated,
}

/// Request lines and their Authorization header.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;
/// Status line, extra headers, body, and the length announced when it differs from the body's.
type Reply = (&'static str, Vec<String>, Vec<u8>, Option<usize>);

struct Hub {
    port: u16,
    log: RequestLog,
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves `files` of `REPO` on 127.0.0.1 the way the hub does: small files directly with their
/// git blob sha1 as etag, `model.safetensors` as an LFS file (302 to `/cdn/<sha256>`).
fn hub(files: HashMap<String, Vec<u8>>, mode: Mode) -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let files = Arc::new(files);
    let l = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, l) = (files.clone(), l.clone());
            std::thread::spawn(move || answer(stream, &files, mode, port, &l));
        }
    });
    Hub { port, log }
}

fn answer(
    mut s: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    mode: Mode,
    port: u16,
    log: &Mutex<Vec<(String, Option<String>)>>,
) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    log.lock().unwrap().push((line.trim().to_string(), headers.get("authorization").cloned()));
    let range_start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<usize>().ok());
    let probe = headers.get("range").is_some_and(|r| r == "bytes=0-0");
    let resolve = format!("/{REPO}/resolve/main/");
    let (status, extra, body, announced): Reply = if let Some(name) = path.strip_prefix(&resolve) {
        match files.get(name) {
            None => ("404 Not Found", vec!["X-Error-Code: EntryNotFound".into()], b"Entry not found".to_vec(), None),
            Some(bytes) if name == "model.safetensors" => {
                let sha = hex(Sha256::digest(bytes));
                let headers = vec![
                    format!("Location: http://127.0.0.1:{port}/cdn/{sha}"),
                    format!("X-Repo-Commit: {COMMIT}"),
                    format!("X-Linked-Etag: \"{sha}\""),
                    format!("X-Linked-Size: {}", bytes.len()),
                ];
                ("302 Found", headers, Vec::new(), None)
            }
            Some(bytes) => {
                let mut git = Sha1::new();
                git.update(format!("blob {}\0", bytes.len()).as_bytes());
                git.update(bytes);
                let etag = hex(git.finalize());
                let headers = vec![format!("ETag: \"{etag}\""), format!("X-Repo-Commit: {COMMIT}")];
                ranged(headers, bytes, range_start, probe)
            }
        }
    } else if let Some(sha) = path.strip_prefix("/cdn/") {
        let bytes = files.values().find(|b| hex(Sha256::digest(b)) == sha).cloned().unwrap_or_default();
        let mut served = bytes.clone();
        if mode == Mode::Corrupt {
            served[bytes.len() / 2] ^= 0xff;
        }
        let (status, h, mut body, _) = ranged(vec![], &served, range_start, probe);
        let full = body.len();
        if mode == Mode::Truncated && !probe {
            body.truncate(full / 2);
        }
        (status, h, body, Some(full))
    } else {
        ("404 Not Found", vec![], Vec::new(), None)
    };
    let mut head =
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", announced.unwrap_or(body.len()));
    for h in extra {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(&body);
    let _ = s.flush();
}

/// 206 with `Content-Range` for a ranged request, else 200.
fn ranged(
    mut headers: Vec<String>,
    bytes: &[u8],
    start: Option<usize>,
    probe: bool,
) -> (&'static str, Vec<String>, Vec<u8>, Option<usize>) {
    let n = bytes.len();
    match start {
        Some(_) if probe => {
            headers.push(format!("Content-Range: bytes 0-0/{n}"));
            ("206 Partial Content", headers, bytes[..1].to_vec(), None)
        }
        Some(a) => {
            headers.push(format!("Content-Range: bytes {a}-{}/{n}", n - 1));
            ("206 Partial Content", headers, bytes[a..].to_vec(), None)
        }
        None => ("200 OK", headers, bytes.to_vec(), None),
    }
}

fn fixture_files(with_tokenizer: bool) -> HashMap<String, Vec<u8>> {
    let mut files = HashMap::new();
    for name in ["model.safetensors", "config.json"] {
        files.insert(name.to_string(), std::fs::read(fixture().join(name)).unwrap());
    }
    if with_tokenizer {
        files.insert("tokenizer.json".into(), b"{\"not\": \"used by fetch\"}".to_vec());
    }
    files
}

/// `dfer ARGS` with the hub environment of a test.
fn dfer_env(args: &[&str], hf_home: &Path, endpoint: &str, extra: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dfer"));
    c.args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE");
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn repo_cache(hf_home: &Path) -> PathBuf {
    hf_home.join("hub").join("models--tiny-org--clip-tiny")
}

/// Largest absolute difference between dfer's features for `weights` and the fixture's expected ones.
fn parity(weights: &str, env: Option<(&Path, &str)>) -> f32 {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ours.safetensors");
    let inputs = fixture().join("inputs.safetensors");
    let args = [
        "bench",
        "clip-features",
        "--weights",
        weights,
        "--inputs",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = match env {
        Some((home, endpoint)) => dfer_env(&args, home, endpoint, &[]),
        None => common::dfer(&args),
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ours = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(fixture().join("expected.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut worst = 0f32;
    for name in ["image_embeds", "text_embeds"] {
        let (a, b) = (&ours[name], &expected[name]);
        assert_eq!(a.dims(), b.dims(), "{name}");
        let d: f32 = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        let scale: f32 = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        assert!(scale > 0.05, "{name}: expected features are not near zero ({scale})");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn tiny_clip_made_by_transformers_gives_the_same_features() {
    let worst = parity(fixture().to_str().unwrap(), None);
    assert!(worst <= 1e-5, "max |dfer - transformers| = {worst:e}");
}

#[test]
fn fetches_from_a_hub_into_its_cache_and_then_needs_no_network() {
    let server = hub(fixture_files(true), Mode::Good);
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let home = tempfile::tempdir().unwrap();
    let o = dfer_env(&["weights", "fetch", REPO], home.path(), &endpoint, &[("HF_TOKEN", "hf_test_token")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let cache = repo_cache(home.path());
    assert_eq!(std::fs::read_to_string(cache.join("refs/main")).unwrap(), COMMIT);
    for (name, bytes) in fixture_files(true) {
        let pointer = cache.join("snapshots").join(COMMIT).join(&name);
        assert_eq!(std::fs::read(&pointer).unwrap(), bytes, "{name} cached as served");
        assert!(text(&o).contains(pointer.to_str().unwrap()), "{name} path printed: {}", text(&o));
        let blob = std::fs::canonicalize(&pointer).unwrap();
        assert_eq!(blob.parent().unwrap(), std::fs::canonicalize(cache.join("blobs")).unwrap());
    }
    let sha = hex(Sha256::digest(std::fs::read(fixture().join("model.safetensors")).unwrap()));
    assert!(cache.join("blobs").join(&sha).is_file(), "the weights blob is named by its sha256");
    let log = server.log.lock().unwrap().clone();
    assert!(log.iter().any(|(l, _)| l.starts_with("GET /cdn/")), "followed the redirect to the CDN: {log:?}");
    let resolve: Vec<_> = log.iter().filter(|(l, _)| l.contains("/resolve/")).collect();
    assert!(resolve.iter().all(|(_, auth)| auth.as_deref() == Some("Bearer hf_test_token")), "token sent: {log:?}");

    // Cached: no server needed, offline mode or not; the features equal transformers' from the cache.
    let closed = "http://127.0.0.1:9";
    let o = dfer_env(&["weights", "fetch", &format!("hf:{REPO}")], home.path(), closed, &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(parity(&format!("hf:{REPO}"), Some((home.path(), closed))) <= 1e-5);

    // Offline with an empty cache is a clear refusal.
    let empty = tempfile::tempdir().unwrap();
    let o = dfer_env(&["weights", "fetch", REPO], empty.path(), closed, &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("HF_HUB_OFFLINE") && text(&o).contains("model.safetensors"), "{}", text(&o));
}

#[test]
fn a_repository_without_a_tokenizer_is_fine_and_one_without_weights_is_named() {
    let server = hub(fixture_files(false), Mode::Good);
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let home = tempfile::tempdir().unwrap();
    let o = dfer_env(&["weights", "fetch", REPO], home.path(), &endpoint, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("tokenizer  (none in the repository)"), "{}", text(&o));
    let mut no_weights = fixture_files(false);
    no_weights.remove("model.safetensors");
    let server = hub(no_weights, Mode::Good);
    let home = tempfile::tempdir().unwrap();
    let o = dfer_env(&["weights", "fetch", REPO], home.path(), &format!("http://127.0.0.1:{}", server.port), &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("has no model.safetensors"), "{}", text(&o));
}

#[test]
fn corrupt_or_truncated_downloads_are_refused_and_not_kept() {
    for mode in [Mode::Corrupt, Mode::Truncated] {
        let server = hub(fixture_files(true), mode);
        let endpoint = format!("http://127.0.0.1:{}", server.port);
        let home = tempfile::tempdir().unwrap();
        let o = dfer_env(&["weights", "fetch", REPO], home.path(), &endpoint, &[]);
        assert_ne!(o.status.code(), Some(0), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("model.safetensors"), "{t}");
        let sha = hex(Sha256::digest(std::fs::read(fixture().join("model.safetensors")).unwrap()));
        let blob = repo_cache(home.path()).join("blobs").join(&sha);
        assert!(!blob.exists(), "a bad download is not kept under its final name");
        let pointer = repo_cache(home.path()).join("snapshots").join(COMMIT).join("model.safetensors");
        assert!(!pointer.exists(), "no snapshot entry for a bad download");
        if mode == Mode::Corrupt {
            assert!(t.contains("sha256") && t.contains("run again"), "{t}");
        }
    }
}

#[test]
fn weights_fetch_refuses_what_is_no_repository() {
    let home = tempfile::tempdir().unwrap();
    let o = dfer_env(&["weights", "fetch", "not-a-repo"], home.path(), "http://127.0.0.1:9", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("hf:owner/name"), "{}", text(&o));
}
