//! The `dfer` command line: the global flags; the subcommands and their dispatch live in
//! `dfer::commands`.

use std::process::ExitCode;

use clap::Parser;
use dfer::commands::Command;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    dfer::logging::init(cli.verbose, cli.quiet);
    let result = dfer::commands::run(&cli.command);
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    ExitCode::from(error::exit_code(&result))
}
