//! The command line: subcommands `repaint`, `cover`, `text2music` and the flags they share.

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use retake_engine::pipeline::request::Mode;
use retake_engine::runtime::DeviceChoice;

use super::bench::BenchArgs;
use retake_engine::runtime::parse_size;

/// Repaint a region of a track, cover it in a new style, or make music from text, with ACE-Step 1.5.
#[derive(Debug, Parser)]
#[command(name = "retake", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub invocation: Invocation,
}

/// A task, or the benchmark.
#[derive(Debug, Subcommand)]
pub enum Invocation {
    /// One of the three tasks.
    #[command(flatten)]
    Task(Box<Command>),
    /// Time the engine on the real ACE-Step 1.5 geometry with random weights (bench/compare.sh sets the numbers
    /// beside the PyTorch reference's).
    Bench(BenchArgs),
}

/// The three tasks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Regenerate the time range --start..--end of a WAV file, keeping the rest of it.
    Repaint(RepaintArgs),
    /// Re-render a whole WAV file in the style of --prompt, keeping its structure.
    Cover(CoverArgs),
    /// Generate --duration seconds of music from --prompt alone.
    #[command(name = "text2music")]
    Text2Music(Text2MusicArgs),
}

/// `retake repaint`.
#[derive(Debug, Args)]
pub struct RepaintArgs {
    /// WAV file to repaint (any rate, mono or stereo).
    #[arg(long, value_name = "WAV")]
    pub input: PathBuf,
    /// Where to write the result (24-bit stereo at the input's rate).
    #[arg(long, value_name = "WAV")]
    pub output: PathBuf,
    /// Start of the region, in seconds (below 0 extends the track at the front).
    #[arg(long, allow_negative_numbers = true)]
    pub start: f64,
    /// End of the region, in seconds (past the end extends the track).
    #[arg(long, allow_negative_numbers = true)]
    pub end: f64,
    /// Style caption for the new material.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// How far the region departs from the original (0..1).
    #[arg(long, default_value_t = 1.0)]
    pub strength: f32,
    /// Crossfade, in milliseconds, between the original samples kept outside the region and the new audio.
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub crossfade_ms: f64,
    /// Return the decoded audio everywhere instead of splicing the original samples back outside the region.
    #[arg(long, conflicts_with = "crossfade_ms")]
    pub no_splice: bool,
    /// Flags every task shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `retake cover`.
#[derive(Debug, Args)]
pub struct CoverArgs {
    /// WAV file to cover (any rate, mono or stereo).
    #[arg(long, value_name = "WAV")]
    pub input: PathBuf,
    /// Where to write the result (24-bit stereo at the input's rate, as long as the input).
    #[arg(long, value_name = "WAV")]
    pub output: PathBuf,
    /// Style caption of the cover.
    #[arg(long)]
    pub prompt: String,
    /// Share of the steps that follow the source's structure (0..1).
    #[arg(long, default_value_t = 1.0)]
    pub cover_strength: f32,
    /// How much of the source's own latents seed the start (0 = pure noise).
    #[arg(long, default_value_t = 0.0)]
    pub noise_strength: f32,
    /// Flags every task shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `retake text2music`.
#[derive(Debug, Args)]
pub struct Text2MusicArgs {
    /// Where to write the result (24-bit stereo, 48 kHz).
    #[arg(long, value_name = "WAV")]
    pub output: PathBuf,
    /// Length of the result, in seconds.
    #[arg(long)]
    pub duration: f64,
    /// Style caption.
    #[arg(long)]
    pub prompt: String,
    /// Flags every task shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Model, device, sampling and prompt flags shared by every task.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Lyrics ("[Instrumental]" when neither --lyrics nor --lyrics-file is given).
    #[arg(long, conflicts_with = "lyrics_file")]
    pub lyrics: Option<String>,
    /// File holding the lyrics.
    #[arg(long, value_name = "FILE")]
    pub lyrics_file: Option<PathBuf>,
    /// Vocal language code ("en", "ja", …; "unknown" lets the model decide).
    #[arg(long, default_value = "unknown")]
    pub language: String,
    /// Tempo in beats per minute.
    #[arg(long)]
    pub bpm: Option<f64>,
    /// Key and scale, e.g. "D minor".
    #[arg(long)]
    pub key: Option<String>,
    /// Time signature numerator, e.g. 4 or 3.
    #[arg(long = "timesig", value_name = "N")]
    pub time_signature: Option<String>,
    /// Model folder in the ACE-Step/Ace-Step1.5 layout [default: the Hugging Face cache, downloading what is
    /// missing].
    #[arg(long, value_name = "DIR", env = "RETAKE_MODEL_DIR")]
    pub model: Option<PathBuf>,
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Most device memory for model weights, e.g. 3GiB (weights are streamed when the model does not fit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub vram_budget: Option<u64>,
    /// Noise seed [default: random, printed in the summary].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Diffusion steps.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: u32,
    /// Schedule shift.
    #[arg(long, default_value_t = 3.0)]
    pub shift: f64,
    /// Pipeline glue: studio (official ACE-Step behaviour) or reference (DiffSynth 2.1.12 semantics).
    #[arg(long, default_value = "studio", value_parser = mode_parser())]
    pub mode: Mode,
}

impl Command {
    /// The flags every task shares.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Self::Repaint(a) => &a.common,
            Self::Cover(a) => &a.common,
            Self::Text2Music(a) => &a.common,
        }
    }

    /// The source WAV, for the tasks that have one.
    pub fn input(&self) -> Option<&Path> {
        match self {
            Self::Repaint(a) => Some(&a.input),
            Self::Cover(a) => Some(&a.input),
            Self::Text2Music(_) => None,
        }
    }

    /// Where the result goes.
    pub fn output(&self) -> &Path {
        match self {
            Self::Repaint(a) => &a.output,
            Self::Cover(a) => &a.output,
            Self::Text2Music(a) => &a.output,
        }
    }

    /// The style caption.
    pub fn prompt(&self) -> &str {
        match self {
            Self::Repaint(a) => &a.prompt,
            Self::Cover(a) => &a.prompt,
            Self::Text2Music(a) => &a.prompt,
        }
    }
}

fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(["studio", "reference"]).map(|mode| {
        if mode == "reference" {
            Mode::Reference
        } else {
            Mode::Studio
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["retake"], args].concat())
    }

    fn task(cli: &Cli) -> Option<&Command> {
        match &cli.invocation {
            Invocation::Task(command) => Some(command),
            Invocation::Bench(_) => None,
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn repaint_defaults_splice_with_a_100_ms_crossfade_in_studio_mode_with_8_steps() {
        let cli =
            parse(&["repaint", "--input", "a.wav", "--output", "b.wav", "--start", "12", "--end", "16.5"]).unwrap();
        let Some(Command::Repaint(args)) = task(&cli) else { panic!("{cli:?}") };
        assert_eq!(
            (args.start, args.end, args.strength, args.crossfade_ms, args.no_splice),
            (12.0, 16.5, 1.0, 100.0, false)
        );
        let common = task(&cli).unwrap().common();
        assert_eq!((common.steps, common.shift, common.mode, common.device), (8, 3.0, Mode::Studio, DeviceChoice::Cpu));
        assert_eq!((common.seed, common.vram_budget, common.language.as_str()), (None, None, "unknown"));
    }

    #[test]
    fn devices_sizes_modes_and_negative_starts_parse() {
        let cli = parse(&[
            "repaint",
            "--input",
            "a.wav",
            "--output",
            "b.wav",
            "--start",
            "-2",
            "--end",
            "1",
            "--device",
            "cuda:1",
            "--vram-budget",
            "3GiB",
            "--mode",
            "reference",
            "--timesig",
            "3",
        ])
        .unwrap();
        let common = task(&cli).unwrap().common();
        assert_eq!(
            (common.device, common.vram_budget, common.mode),
            (DeviceChoice::Cuda(1), Some(3 << 30), Mode::Reference)
        );
        assert_eq!(common.time_signature.as_deref(), Some("3"));
        let Some(Command::Repaint(args)) = task(&cli) else { panic!("{cli:?}") };
        assert_eq!(args.start, -2.0);
        assert_eq!("CUDA".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
    }

    #[test]
    fn bench_takes_its_own_flags_and_no_task_flags() {
        let cli = parse(&["bench", "--runs", "5", "--only", "dit", "--budget", "8GiB", "--json", "r.json"]).unwrap();
        let Invocation::Bench(args) = &cli.invocation else { panic!("{cli:?}") };
        assert_eq!((args.runs, args.only.as_deref(), args.budget), (5, Some("dit"), Some(8 << 30)));
        assert_eq!((args.device, args.json.as_deref(), args.seed), (DeviceChoice::Cpu, Some(Path::new("r.json")), 0));
        assert_eq!(parse(&["bench", "--runs", "0"]).unwrap_err().kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(parse(&["bench", "--prompt", "x"]).unwrap_err().kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn bad_values_are_rejected_by_the_parser() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "5", "--prompt", "p"];
        for extra in [["--device", "tpu"], ["--steps", "0"], ["--vram-budget", "lots"]] {
            let err = parse(&[&t2m[..], &extra[..]].concat()).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{extra:?}: {err}");
        }
        let mode = parse(&[&t2m[..], &["--mode", "fast"]].concat()).unwrap_err();
        assert_eq!(mode.kind(), clap::error::ErrorKind::InvalidValue);
        let both = parse(&[&t2m[..], &["--lyrics", "la", "--lyrics-file", "l.txt"]].concat()).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let missing = parse(&["cover", "--input", "a.wav", "--output", "b.wav"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
