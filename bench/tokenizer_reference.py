#!/usr/bin/env python3
"""Reference CLIP token ids for dfer's BPE tokenizer: writes tests/fixtures/clip_tokens.json.

The ids come from independent upstream implementations that share one vocabulary, the BPE file
`open_clip/bpe_simple_vocab_16e6.txt.gz` shipped in the open_clip_torch wheel:
  (a) open_clip's SimpleTokenizer (OpenAI's algorithm: ftfy.fix_text, html.unescape twice,
      whitespace collapse, lower case, regex split, byte-level BPE with `</w>` word ends);
  (b) transformers' CLIPTokenizerFast (the `tokenizers` library: NFC, \\s+ -> " ", lower case;
      no ftfy, no html unescape), loaded from a vocab.json + merges.txt derived here from the same
      file the way OpenAI / Hugging Face do it: vocab = the 256 byte-level unicode characters,
      then each of them + `</w>`, then the joined merges of lines [1 : 49152-256-2+1] of the file,
      then `<|startoftext|>` (49406) and `<|endoftext|>` (49407); merges.txt = "#version: 0.2"
      and those merge lines;
  (c) optionally (--tf4-python PY, a Python with transformers 4.x, ftfy and regex) transformers
      4.x's slow pure-Python CLIPTokenizer (ftfy + html cleaning like (a)) and its fast one.
transformers 5.x has no slow CLIP tokenizer (CLIPTokenizerFast is CLIPTokenizer there).

Every entry holds `text` and `ids` (with 49406 / 49407, no padding, no truncation) = the
transformers-fast ids; `openclip_agrees` (and `slow_agrees`, `tf4_fast_agrees` with (c)) say
whether the others give the same ids; where one differs its ids are kept alongside
(`openclip_ids`, `slow_ids`, `tf4_fast_ids`).

Also writes under --ref (default bench-out/tokenizer-ref, ignored by git):
  clip-tokenizer-src/{vocab.json,merges.txt}  the derived files;
  clip-tokenizer/                            CLIPTokenizerFast.save_pretrained (tokenizer.json)
  clip-tokenizer-tf4/                        the same from transformers 4.x (with --tf4-python)

Run (in a venv with open_clip_torch, transformers 5, torch; a second venv with transformers 4.x):
     python3 bench/tokenizer_reference.py --tf4-python VENV4/bin/python
     [--wheel open_clip_torch-3.3.0-py3-none-any.whl]   (without --wheel the wheel is fetched
     with `pip download --no-deps open_clip_torch==<installed version>` to hash it)
Made with: open_clip_torch 3.3.0 (ftfy 6.3.1, regex 2026.11.19), transformers 5.24.0 with
tokenizers 0.23.3, and transformers 4.57.x for (c). Deterministic: same versions, same bytes.
"""
import argparse
import base64
import gzip
import hashlib
import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

BPE_IN_WHEEL = "open_clip/bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
REPO = pathlib.Path(__file__).resolve().parent.parent


def byte_chars() -> list:
    """The 256 byte-level characters in vocabulary order (OpenAI's bytes_to_unicode dict order):
    first the 188 printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') as themselves, in byte
    order, then the other 68 bytes (0..32, 127..160, 173) as chr(256 + n), n = 0, 1, ... in byte
    order. So id 0 is '!', id 188 is chr(256) (byte 0), id 220 is 'Ġ' (space)."""
    keep = [b for b in range(256) if ord("!") <= b <= ord("~") or ord("¡") <= b <= ord("¬") or ord("®") <= b <= ord("ÿ")]
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(rest))]


def derive(bpe_gz: pathlib.Path, dest: pathlib.Path):
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    assert all(len(p) == 2 for p in pairs), "merge lines are pairs"
    base = byte_chars()
    vocab = base + [c + "</w>" for c in base] + ["".join(p) for p in pairs] + [SOT, EOT]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408
    enc = {t: i for i, t in enumerate(vocab)}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.json").write_text(json.dumps(enc, ensure_ascii=False), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n", encoding="utf-8")
    return enc


def texts_to_check() -> list:
    import tomllib
    out = ["a photo of a cat.", "x", "X x  X"]
    for f in sorted((REPO / "data-manifests").glob("*.toml")):
        for label in tomllib.loads(f.read_text())["labels"]:
            for n in (4, 8, 16):
                out.append(" ".join(["x"] * n) + " " + label.lower() + ".")
            out.append(label.lower())
    words = ("the quick brown fox jumps over a lazy dog while seven happy children watch "
             "from the old wooden bridge near our quiet village").split()
    long = " ".join(words[i % len(words)] for i in range(100))
    out += ["don't stop", "It's 2026!!", "café naïve", "  multiple   spaces\tand\ttabs\n", "e-mail@host.com",
            "1234567", "emoji 😀 face", "Ünïcödé", "a,b;c:d", "<|startoftext|>", long,
            # extra: where ftfy / html cleaning matters
            "fish &amp; chips", "\u201csmart quotes\u201d", "caf\u00c3\u00a9", "e\u0301 combining", "<|endoftext|> end"]
    seen, uniq = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    return uniq


def tf4_worker(src: str, texts_file: str, out_file: str, save_dir: str) -> int:
    """Runs under a Python with transformers 4.x: slow (pure Python) and fast CLIP tokenizers."""
    import transformers
    from transformers import CLIPTokenizer, CLIPTokenizerFast
    transformers.logging.set_verbosity_error()
    texts = json.loads(pathlib.Path(texts_file).read_text(encoding="utf-8"))
    slow = CLIPTokenizer(f"{src}/vocab.json", f"{src}/merges.txt")
    assert slow.fix_text is not None, "ftfy missing: the slow tokenizer would not clean like OpenAI"
    fast = CLIPTokenizerFast(f"{src}/vocab.json", f"{src}/merges.txt")
    fast.save_pretrained(save_dir)
    res = {"transformers": transformers.__version__,
           "slow": [slow(t)["input_ids"] for t in texts], "fast": [fast(t)["input_ids"] for t in texts]}
    pathlib.Path(out_file).write_text(json.dumps(res), encoding="utf-8")
    return 0


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "tests/fixtures/clip_tokens.json"))
    ap.add_argument("--wheel", help="the open_clip_torch wheel to hash (default: pip download it)")
    ap.add_argument("--ref", default=str(REPO / "bench-out/tokenizer-ref"), help="where the derived and saved tokenizer files go")
    ap.add_argument("--tf4-python", help="a Python with transformers 4.x for the slow tokenizer")
    ap.add_argument("--tf4-worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tf4_worker:
        return tf4_worker(*a.tf4_worker)

    import importlib.metadata as md
    import open_clip
    import tokenizers
    import transformers
    from open_clip.tokenizer import SimpleTokenizer, default_bpe
    from transformers import CLIPTokenizerFast
    transformers.logging.set_verbosity_error()

    oc_version = md.version("open_clip_torch")
    bpe = pathlib.Path(default_bpe())
    bpe_bytes = bpe.read_bytes()
    # the installed file is the one the wheel's RECORD names
    record = next(l for l in md.distribution("open_clip_torch").read_text("RECORD").splitlines()
                  if l.startswith(BPE_IN_WHEEL + ","))
    digest = base64.urlsafe_b64encode(hashlib.sha256(bpe_bytes).digest()).rstrip(b"=").decode()
    assert record.split(",")[1] == "sha256=" + digest, record
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pathlib.Path(a.wheel) if a.wheel else None
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                            f"open_clip_torch=={oc_version}"], check=True)
            wheel = next(pathlib.Path(tmp).glob("open_clip_torch-*.whl"))
        wheel_bytes = wheel.read_bytes()
        with zipfile.ZipFile(wheel) as z:
            assert z.read(BPE_IN_WHEEL) == bpe_bytes, "installed bpe file differs from the wheel's"
        wheel_name = wheel.name

    ref = pathlib.Path(a.ref)
    src = ref / "clip-tokenizer-src"
    enc = derive(bpe, src)
    oc = SimpleTokenizer()
    # the derived vocabulary is open_clip's, up to the names of the two specials
    assert all(oc.encoder[t] == i for t, i in enc.items() if i < 49406)
    assert oc.sot_token_id == 49406 and oc.eot_token_id == 49407
    fast = CLIPTokenizerFast.from_pretrained(str(src))
    assert fast.bos_token_id == 49406 and fast.eos_token_id == 49407 and len(fast) == 49408
    fast.save_pretrained(str(ref / "clip-tokenizer"))
    assert CLIPTokenizerFast.from_pretrained(str(ref / "clip-tokenizer"))("a photo of a cat.")["input_ids"] == \
        [49406, 320, 1125, 539, 320, 2368, 269, 49407]

    texts = texts_to_check()
    tf4 = None
    if a.tf4_python:
        tfile, ofile = ref / "texts.json", ref / "tf4_ids.json"
        tfile.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        subprocess.run([a.tf4_python, __file__, "--tf4-worker", str(src), str(tfile), str(ofile),
                        str(ref / "clip-tokenizer-tf4")], check=True)
        tf4 = json.loads(ofile.read_text(encoding="utf-8"))

    entries = []
    for k, t in enumerate(texts):
        ids = fast(t)["input_ids"]
        e = {"text": t, "ids": ids}
        oc_ids = [49406] + oc.encode(t) + [49407]
        e["openclip_agrees"] = oc_ids == ids
        if oc_ids != ids:
            e["openclip_ids"] = oc_ids
        if tf4:
            for key, name in (("slow", "slow"), ("fast", "tf4_fast")):
                other = tf4[key][k]
                e[name + "_agrees"] = other == ids
                if other != ids:
                    e[name + "_ids"] = other
        entries.append(e)

    facts = {"a photo of a cat.": [49406, 320, 1125, 539, 320, 2368, 269, 49407], "x": [49406, 343, 49407]}
    for e in entries:
        if e["text"] in facts:
            assert e["ids"] == facts[e["text"]] and e["openclip_agrees"], e

    doc = {
        "source": f"open_clip_torch=={oc_version}",
        "wheel": wheel_name,
        "wheel_sha256": sha256(wheel_bytes),
        "bpe_file": BPE_IN_WHEEL,
        "bpe_sha256": sha256(bpe_bytes),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "transformers_slow": tf4["transformers"] if tf4 else None,
        "ids_from": "transformers CLIPTokenizerFast (tokenizers backend) on vocab.json + merges.txt derived from bpe_file",
        "entries": entries,
    }
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({k: v for k, v in doc.items() if k != "entries"}, ensure_ascii=False, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(e, ensure_ascii=False) for e in entries)
    out.write_text(head + ',\n "entries": [\n' + body + "\n ]\n}\n", encoding="utf-8")
    assert json.loads(out.read_text(encoding="utf-8")) == doc

    print(f"open_clip_torch {oc_version} ({open_clip.__file__}), transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}, slow from {doc['transformers_slow']}")
    print(f"wheel {wheel_name} sha256 {doc['wheel_sha256']}")
    print(f"{BPE_IN_WHEEL} sha256 {doc['bpe_sha256']}")
    print(f"{len(entries)} strings -> {out} ({out.stat().st_size} bytes)")
    for e in entries:
        bad = [k[:-7] for k in e if k.endswith("_agrees") and not e[k]]
        if bad:
            print(f"  disagree ({', '.join(bad)}): {e['text']!r}: fast {e['ids']}" +
                  "".join(f"; {b} {e[b + '_ids']}" for b in bad))
    return 0


if __name__ == "__main__":
    sys.exit(main())
