//! The `dfer` command line: argument parsing only; every subcommand lives in `dfer::commands`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dfer::commands::{bench, embed, eval, inspect, report, synth, train, weights};
#[cfg(feature = "media")]
use dfer::commands::{manifest, prep, run, verify};
use dfer::error;

#[derive(Parser)]
#[command(
    name = "dfer",
    version,
    about = "Dynamic facial expression recognition: datasets, preprocessing, training (OUS, DFER-CLIP, IAL, FineCLIPER)"
)]
#[command(
    after_help = "Exit codes: 0 ok, 1 some clips failed (recorded, the rest is done), 2 refused (bad usage or unusable \
input, nothing written), 3 failed while running (a full disk, an I/O error).\n\n\
Example:\n  dfer synth --layout dfew --clips 40 --out synth-dfew\n  \
dfer manifest --dataset dfew --root synth-dfew -o synth-dfew/clips.parquet\n  \
dfer inspect synth-dfew/clips.parquet\n  \
dfer run pipelines/demo.toml"
)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a clip manifest (clips.parquet) from a dataset root and its split files.
    #[cfg(feature = "media")]
    Manifest(manifest::Args),
    /// Turn a clip manifest into HDF5 shards of face crops and masked scene frames.
    #[cfg(feature = "media")]
    Prep(prep::Args),
    /// Summarise a dfer artefact: clip manifest, prep table, shard, run folder or pipeline file.
    Inspect(inspect::Args),
    /// Write a synthetic dataset in an official layout (DFEW, FERV39k, MAFW).
    Synth(synth::Args),
    /// Train one fold from prep's shards (model.method: OUS, DFER-CLIP, IAL or FineCLIPER).
    Train(train::Args),
    /// Evaluate a training run: UAR, WAR, per-class recall, confusion matrix (CSV + PNG).
    Eval(eval::Args),
    /// Average several runs (e.g. five folds) at the best and the last epoch.
    Report(report::Args),
    /// Cache the frozen image tower's features so training runs only the light modules.
    Embed(embed::Args),
    /// Developer measurements: CLIP parity features, the loader, the JPEG shard layout, timed training steps.
    Bench(bench::Args),
    /// Run a pipeline file: manifest → prep → train → eval → report, skipping what is up to date.
    #[cfg(feature = "media")]
    Run(run::Args),
    /// Check a prep output: every shard present, complete and readable; which to redo.
    #[cfg(feature = "media")]
    Verify(verify::Args),
    /// CLIP weights from the Hugging Face Hub, into Hugging Face's cache.
    Weights(weights::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    dfer::logging::init(cli.verbose, cli.quiet);
    let result = match &cli.command {
        #[cfg(feature = "media")]
        Command::Manifest(a) => manifest::run(a),
        #[cfg(feature = "media")]
        Command::Prep(a) => prep::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Report(a) => report::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "media")]
        Command::Run(a) => run::run(a),
        #[cfg(feature = "media")]
        Command::Verify(a) => verify::run(a),
        Command::Weights(a) => weights::run(a),
    };
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    ExitCode::from(error::exit_code(&result))
}
