# The two commands of the README: `make demo` and `make test`. Both set the machine up first.
.PHONY: setup demo test lint

setup:
	scripts/setup.sh

demo: setup
	scripts/demo.sh

test: setup
	# --tests: the unit and integration tests (the binary has none of its own: Cargo.toml `test = false`).
	# Tests run as many at a time as there are cores, so each test's tensor work takes one thread
	# (candle reads RAYON_NUM_THREADS); more only makes the tests' processes fight for the cores.
	RAYON_NUM_THREADS=1 cargo test --tests

lint:
	cargo fmt --all --check
	# --workspace: the fuzz targets (fuzz/) must keep compiling, though only scripts/fuzz.sh runs them.
	cargo clippy --workspace --all-targets -- -D warnings
	# The trainer-only build (no ffmpeg, no ONNX Runtime) must keep compiling; a library has
	# nothing to link, so checking it is compiling it.
	cargo check --no-default-features --lib
