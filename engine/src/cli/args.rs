//! The command line: subcommands `repaint`, `cover`, `text2music` and the flags they share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use retake_engine::model::linear::CpuPrecision;
use retake_engine::model::lora::LoraSpec;
use retake_engine::model::variant::Variant;
use retake_engine::pipeline::request::{Mode, MAX_DURATION_S, MAX_SPLICE_CROSSFADE_MS, MAX_STEPS};
use retake_engine::remote::RemoteServer;
use retake_engine::runtime::{parse_size, DeviceChoice};

use super::bench::BenchArgs;

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
    /// Serve the ACE-Step 1.5 REST API (the official server's routes and fields) on Retake's engine, for clients
    /// such as ACE-Step-DAW, acestep.vst3 and Retake's own remote backend (README.md, "`retake serve`").
    Serve(Box<ServeArgs>),
}

/// The three tasks.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Regenerate time ranges of an audio file (--range, repeatable, or --start..--end), keeping the rest of it.
    Repaint(RepaintArgs),
    /// Re-render a whole audio file in the style of --prompt, keeping its structure.
    Cover(CoverArgs),
    /// Generate --duration seconds of music from --prompt alone.
    #[command(name = "text2music")]
    Text2Music(Text2MusicArgs),
}

/// `retake repaint`.
#[derive(Debug, Args)]
pub struct RepaintArgs {
    /// Audio file to repaint: WAV, AIFF, FLAC, MP3 or Ogg Vorbis (from 8 kHz, mono or stereo, at most 600 s).
    #[arg(long, value_name = "AUDIO")]
    pub input: PathBuf,
    /// Where to write the result (24-bit stereo WAV at the input's rate; may be the input itself, which is replaced
    /// only once the result is complete).
    #[arg(long, value_name = "WAV")]
    pub output: PathBuf,
    /// A region to regenerate, START:END in seconds (repeatable, regions must not overlap; a start below 0 extends
    /// the track at the front, an end past its end extends it there).
    #[arg(long = "range", value_name = "START:END", allow_hyphen_values = true, value_parser = range, conflicts_with_all = ["start", "end"], required_unless_present = "start")]
    pub ranges: Vec<(f64, f64)>,
    /// Start of the one region, in seconds (below 0 extends the track at the front); with --end, instead of --range.
    #[arg(long, allow_negative_numbers = true, requires = "end")]
    pub start: Option<f64>,
    /// End of the one region, in seconds (past the end extends the track).
    #[arg(long, allow_negative_numbers = true, requires = "start")]
    pub end: Option<f64>,
    /// Style caption for the new material.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// How far the region departs from the original (above 0, up to 1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = number(0.0, Low::Excluded, 1.0).map(|v| v as f32))]
    pub strength: f32,
    /// Crossfade, in milliseconds (0..500), between the original samples kept outside the region and the new
    /// audio.
    #[arg(long, default_value_t = 100.0, value_name = "MS", allow_negative_numbers = true, value_parser = number(0.0, Low::Included, MAX_SPLICE_CROSSFADE_MS))]
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
    /// Audio file to cover: WAV, AIFF, FLAC, MP3 or Ogg Vorbis (from 8 kHz, mono or stereo, at most 600 s).
    #[arg(long, value_name = "AUDIO", required_unless_present = "audio_codes", conflicts_with = "audio_codes")]
    pub input: Option<PathBuf>,
    /// Cover from LM audio codes instead of an audio file: a text file of `<|audio_code_N|>` tokens (other text
    /// between them is ignored); the result lasts 0.2 s per code.
    #[arg(long, value_name = "FILE")]
    pub audio_codes: Option<PathBuf>,
    /// Where to write the result (24-bit stereo WAV at the input's rate, as long as the input; 48 kHz from codes).
    #[arg(long, value_name = "WAV")]
    pub output: PathBuf,
    /// Style caption of the cover.
    #[arg(long)]
    pub prompt: String,
    /// Share of the steps that follow the source's structure (0..1).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = number(0.0, Low::Included, 1.0).map(|v| v as f32))]
    pub cover_strength: f32,
    /// How much of the source's own latents seed the start (0 = pure noise, up to 1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = number(0.0, Low::Included, 1.0).map(|v| v as f32))]
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
    /// Length of the result, in seconds (at most 600).
    #[arg(long, allow_negative_numbers = true, value_parser = number(0.0, Low::Excluded, MAX_DURATION_S))]
    pub duration: f64,
    /// Style caption.
    #[arg(long)]
    pub prompt: String,
    /// Flags every task shares.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `retake serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: 127.0.0.1 keeps the server on this machine, 0.0.0.0 opens it to the network (set
    /// --api-key; there is no TLS, README.md "`retake serve`").
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; stdout says `listening on http://HOST:PORT` once it takes connections).
    #[arg(long, default_value_t = 8001)]
    pub port: u16,
    /// The key clients must send, as `Authorization: Bearer KEY` or an `ai_token` field [default: none, the API
    /// is open].
    #[arg(long, value_name = "KEY", env = "ACESTEP_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Tasks that may wait behind the running one (1..100000); one more is answered 429.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue: u32,
    /// The largest request body in MiB (1..4096); a larger upload is answered 413.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_upload_mb: u32,
    /// How long results are kept after their task ended, then deleted: seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "1h", allow_negative_numbers = true, value_parser = duration)]
    pub keep_results: Duration,
    /// The model and where it runs.
    #[command(flatten)]
    pub engine: EngineArgs,
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
    #[arg(long, allow_negative_numbers = true, value_parser = number(0.0, Low::Excluded, f64::INFINITY))]
    pub bpm: Option<f64>,
    /// Key and scale, e.g. "D minor".
    #[arg(long)]
    pub key: Option<String>,
    /// Time signature numerator, e.g. 4 or 3.
    #[arg(long = "timesig", value_name = "N")]
    pub time_signature: Option<String>,
    /// The model and where it runs.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Noise seed, 0..2^64 [default: random, printed in the summary].
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Diffusion steps, 1..1000 [default: the variant's, 8 for turbo variants, 50 for base and sft].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=MAX_STEPS as i64))]
    pub steps: Option<u32>,
    /// Schedule shift, above 0 [default: the variant's, 3 (1 for turbo-shift1)].
    #[arg(long, allow_negative_numbers = true, value_parser = number(0.0, Low::Excluded, f64::INFINITY))]
    pub shift: Option<f64>,
    /// Guidance scale, above 0 (1 = off) [default: the variant's, 1 for turbo variants, which refuse more, 4 for
    /// base and sft].
    #[arg(long, value_name = "G", allow_negative_numbers = true, value_parser = number(0.0, Low::Excluded, f64::INFINITY))]
    pub cfg: Option<f64>,
    /// The part of the schedule where studio-mode guidance (APG) acts, as two sampler times from 0 (clean) to 1
    /// (pure noise), START ≤ END [default: 0 1, the whole schedule]; plain `v_c` outside it.
    #[arg(long, num_args = 2, value_names = ["START", "END"], value_parser = number(0.0, Low::Included, 1.0))]
    pub cfg_interval: Option<Vec<f64>>,
    /// Pipeline glue: studio (official ACE-Step behaviour) or reference (DiffSynth 2.1.12 semantics).
    #[arg(long, default_value = "studio", value_parser = mode_parser())]
    pub mode: Mode,
    /// An audio file whose timbre the result takes (repeatable; at least 1 s of sound each, at most 600 s).
    #[arg(long = "reference", value_name = "AUDIO")]
    pub references: Vec<PathBuf>,
    /// Run the job on an ACE-Step 1.5 API server (`retake serve` or the official acestep.api_server) at this
    /// address, e.g. http://gpu-box:8001, instead of on this machine; the model flags are then the server's.
    #[arg(long, value_name = "URL", env = "RETAKE_SERVER", value_parser = server_url, conflicts_with = "loras")]
    pub server: Option<String>,
    /// The server's API key, sent as `Authorization: Bearer KEY`.
    #[arg(long, value_name = "KEY", env = "ACESTEP_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Seconds the server may take from the upload to the result before the job is given up [default: 600 plus 10
    /// per second of audio, times steps/8].
    #[arg(long, value_name = "SECONDS", requires = "server", value_parser = number(0.0, Low::Excluded, 1e7))]
    pub server_deadline: Option<f64>,
}

/// The model, its device and budget: shared by the tasks and `retake serve`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Model folder in the ACE-Step/Ace-Step1.5 layout, or the official repo's checkpoints/ folder (or the folder
    /// holding it), with the variant's DiT in <DIR>/<folder> or <DIR>/checkpoints/<folder> [default: the Hugging
    /// Face cache, downloading what is missing].
    #[arg(long, value_name = "DIR", env = "RETAKE_MODEL_DIR")]
    pub model: Option<PathBuf>,
    /// Checkpoint variant: turbo, turbo-shift1, turbo-shift3, turbo-continuous, base, sft, xl-base, xl-sft or
    /// xl-turbo (README.md, "Checkpoint variants"); sets the defaults of --steps, --shift and --cfg.
    #[arg(long, value_name = "NAME", env = "RETAKE_VARIANT", default_value = "turbo")]
    pub variant: Variant,
    /// The variant's DiT folder (config.json and model.safetensors or model.safetensors.index.json with its
    /// shards), instead of the one under --model or in the Hugging Face cache.
    #[arg(long, value_name = "DIR")]
    pub dit_dir: Option<PathBuf>,
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Most device memory for model weights, e.g. 3GiB (weights are streamed when the model does not fit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub vram_budget: Option<u64>,
    /// A LoRA adapter merged into the DiT, FILE or FILE:SCALE (repeatable; scale 1 by default): a safetensors file
    /// with DiffSynth (`lora_A`/`lora_B`) or kohya (`lora_down`/`lora_up`, `alpha`) keys.
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub loras: Vec<LoraSpec>,
    /// The linear layers' weights on the CPU: f32 or bf16, half the memory (activations stay f32) [default: bf16
    /// where the CPU has AVX512-BF16, else f32].
    #[arg(long, value_name = "f32|bf16", env = "RETAKE_CPU_PRECISION")]
    pub precision: Option<CpuPrecision>,
}

impl RepaintArgs {
    /// The regions to regenerate: every `--range`, or the one `--start..--end`.
    pub fn ranges(&self) -> Vec<(f64, f64)> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if self.ranges.is_empty() => vec![(start, end)],
            _ => self.ranges.clone(),
        }
    }
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

    /// The source audio file, for the tasks that have one.
    pub fn input(&self) -> Option<&Path> {
        match self {
            Self::Repaint(a) => Some(&a.input),
            Self::Cover(a) => a.input.as_deref(),
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

/// Whether a number range includes its lower end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Low {
    Included,
    Excluded,
}

/// The parser of a number flag: a finite number from `low` (see [`Low`]) up to `high` (inclusive; infinite for no
/// upper end). Out-of-range values, NaN and infinities are refused at parse time with the range in the message.
fn number(low: f64, included: Low, high: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let value: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
        let above_low = match included {
            Low::Included => value >= low,
            Low::Excluded => value > low,
        };
        if value.is_finite() && above_low && value <= high {
            return Ok(value);
        }
        let from = match included {
            Low::Included => format!("from {low}"),
            Low::Excluded => format!("above {low}"),
        };
        let to = if high.is_finite() { format!(" up to {high}") } else { String::new() };
        Err(format!("{value} is out of range; give a number {from}{to}"))
    }
}

/// A `--keep-results` value: a positive number of seconds, or a number with a unit (`90s`, `30m`, `1h`, `2d`).
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("`{text}` has the unit `{unit}`; use s, m, h or d, e.g. 90s, 30m or 1h")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * seconds <= 365.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(n * seconds))
        }
        _ => Err(format!("`{text}` is not a duration from above 0 up to a year; e.g. 90s, 30m or 1h")),
    }
}

/// A `--server` value: an http:// or https:// address (engine/src/remote), without a trailing slash.
fn server_url(text: &str) -> Result<String, String> {
    RemoteServer::new(text, None).map(|server| server.url)
}

/// A `--range` value: `START:END` in seconds, both finite, the start before the end.
fn range(text: &str) -> Result<(f64, f64), String> {
    let numbers = text.split_once(':').map(|(a, b)| (a.trim().parse::<f64>(), b.trim().parse::<f64>()));
    let Some((Ok(start), Ok(end))) = numbers else {
        return Err(format!("`{text}` is not START:END in seconds, e.g. 12.5:16 or -2:4"));
    };
    if !(start.is_finite() && end.is_finite() && start < end) {
        return Err(format!("the range {start}..{end} s is empty or not finite; give a start before the end"));
    }
    Ok((start, end))
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
            Invocation::Bench(_) | Invocation::Serve(_) => None,
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
            (args.ranges(), args.strength, args.crossfade_ms, args.no_splice),
            (vec![(12.0, 16.5)], 1.0, 100.0, false)
        );
        let common = task(&cli).unwrap().common();
        assert_eq!((common.steps, common.shift, common.cfg), (None, None, None), "the variant's defaults apply");
        assert_eq!(
            (common.engine.variant, common.mode, common.engine.device),
            (Variant::Turbo, Mode::Studio, DeviceChoice::Cpu)
        );
        assert_eq!((common.seed, common.engine.vram_budget, common.language.as_str()), (None, None, "unknown"));
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
            (common.engine.device, common.engine.vram_budget, common.mode),
            (DeviceChoice::Cuda(1), Some(3 << 30), Mode::Reference)
        );
        assert_eq!(common.time_signature.as_deref(), Some("3"));
        let Some(Command::Repaint(args)) = task(&cli) else { panic!("{cli:?}") };
        assert_eq!(args.ranges(), vec![(-2.0, 1.0)]);
        assert_eq!("CUDA".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
    }

    #[test]
    fn ranges_repeat_and_may_start_before_zero_but_not_mix_with_start_and_end() {
        let base = ["repaint", "--input", "a.wav", "--output", "b.wav"];
        let cli = parse(&[&base[..], &["--range", "-0.1:0.3", "--range", "1.5:2"]].concat()).unwrap();
        let Some(Command::Repaint(args)) = task(&cli) else { panic!("{cli:?}") };
        assert_eq!(args.ranges(), vec![(-0.1, 0.3), (1.5, 2.0)]);
        let mixed = parse(&[&base[..], &["--range", "1:2", "--start", "3", "--end", "4"]].concat()).unwrap_err();
        assert_eq!(mixed.kind(), clap::error::ErrorKind::ArgumentConflict);
        let neither = parse(&base).unwrap_err();
        assert_eq!(neither.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let half = parse(&[&base[..], &["--start", "3"]].concat()).unwrap_err();
        assert_eq!(half.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        for (value, message) in [
            ("2:1", "the range 2..1 s is empty or not finite; give a start before the end"),
            ("1:1", "the range 1..1 s is empty"),
            ("1-2", "`1-2` is not START:END in seconds"),
            ("a:2", "`a:2` is not START:END"),
            ("0:inf", "the range 0..inf s is empty or not finite"),
        ] {
            let err = parse(&[&base[..], &["--range", value]].concat()).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{value}: {err}");
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
    }

    #[test]
    fn loras_and_references_repeat_and_cover_takes_codes_instead_of_an_input() {
        let cli = parse(&[
            "cover",
            "--audio-codes",
            "codes.txt",
            "--output",
            "o.wav",
            "--prompt",
            "p",
            "--lora",
            "style.safetensors:0.5",
            "--lora",
            "voice.safetensors",
            "--reference",
            "r1.wav",
            "--reference",
            "r2.wav",
        ])
        .unwrap();
        let Some(Command::Cover(args)) = task(&cli) else { panic!("{cli:?}") };
        assert_eq!((args.input.as_deref(), args.audio_codes.as_deref()), (None, Some(Path::new("codes.txt"))));
        let loras: Vec<(&Path, f64)> = args.common.engine.loras.iter().map(|l| (l.path.as_path(), l.scale)).collect();
        assert_eq!(loras, [(Path::new("style.safetensors"), 0.5), (Path::new("voice.safetensors"), 1.0)]);
        assert_eq!(args.common.references, [PathBuf::from("r1.wav"), PathBuf::from("r2.wav")]);
        let neither = parse(&["cover", "--output", "o.wav", "--prompt", "p"]).unwrap_err();
        assert_eq!(neither.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let both = parse(&["cover", "--input", "a", "--audio-codes", "c", "--output", "o", "--prompt", "p"]);
        assert_eq!(both.unwrap_err().kind(), clap::error::ErrorKind::ArgumentConflict);
        let t2m = ["text2music", "--output", "o.wav", "--duration", "5", "--prompt", "p", "--lora"];
        let err = parse(&[&t2m[..], &["a.safetensors:nan"]].concat()).unwrap_err();
        assert!(err.to_string().contains("the LoRA scale in `a.safetensors:nan` is not a finite number"), "{err}");
    }

    #[test]
    fn variant_dit_dir_and_guidance_parse_and_a_wrong_variant_lists_the_nine() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "5", "--prompt", "p"];
        let cli = parse(&[&t2m[..], &["--variant", "xl-base", "--dit-dir", "/m/xl", "--cfg", "7.5"]].concat()).unwrap();
        let common = task(&cli).unwrap().common();
        assert_eq!(
            (common.engine.variant, common.engine.dit_dir.as_deref(), common.cfg),
            (Variant::XlBase, Some(Path::new("/m/xl")), Some(7.5))
        );
        let err = parse(&[&t2m[..], &["--variant", "large"]].concat()).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            err.to_string().contains(
                "pick one of turbo, turbo-shift1, turbo-shift3, turbo-continuous, base, sft, xl-base, xl-sft, xl-turbo"
            ),
            "{err}"
        );
        for value in ["0", "-1", "inf", "NaN"] {
            value_error("--cfg", value);
        }
    }

    #[test]
    fn a_server_address_and_key_parse_and_a_wrong_address_or_a_lora_beside_it_is_refused() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "5", "--prompt", "p"];
        let cli = parse(&[&t2m[..], &["--server", "http://gpu-box:8001/", "--api-key", "k"]].concat()).unwrap();
        let common = task(&cli).unwrap().common();
        assert_eq!((common.server.as_deref(), common.api_key.as_deref()), (Some("http://gpu-box:8001"), Some("k")));
        assert_eq!(common.server_deadline, None);
        let err = value_error("--server", "gpu-box:8001");
        assert!(err.contains("`gpu-box:8001` is not a server address; give one like http://gpu-box:8001"), "{err}");
        let lora = parse(&[&t2m[..], &["--server", "http://h", "--lora", "a.safetensors"]].concat()).unwrap_err();
        assert_eq!(lora.kind(), clap::error::ErrorKind::ArgumentConflict);
        let deadline = parse(&[&t2m[..], &["--server-deadline", "30"]].concat()).unwrap_err();
        assert_eq!(deadline.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        value_error("--server-deadline", "0");
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
    fn serve_defaults_to_the_official_address_and_takes_the_shared_model_flags() {
        let cli = parse(&["serve", "--model", "m", "--device", "cuda:1", "--variant", "base"]).unwrap();
        let Invocation::Serve(args) = &cli.invocation else { panic!("{cli:?}") };
        assert_eq!((args.host.as_str(), args.port, args.queue, args.max_upload_mb), ("127.0.0.1", 8001, 200, 256));
        assert_eq!(args.keep_results, Duration::from_secs(3600));
        let engine = &args.engine;
        assert_eq!(
            (engine.model.as_deref(), engine.device, engine.variant),
            (Some(Path::new("m")), DeviceChoice::Cuda(1), Variant::Base)
        );
        let cli = parse(&["serve", "--port", "0", "--queue", "1", "--keep-results", "90s", "--api-key", "k"]).unwrap();
        let Invocation::Serve(args) = &cli.invocation else { panic!("{cli:?}") };
        assert_eq!((args.port, args.queue, args.api_key.as_deref()), (0, 1, Some("k")));
        assert_eq!(args.keep_results, Duration::from_secs(90));
        for (text, seconds) in [("2", 2.0), ("0.5s", 0.5), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86_400.0)] {
            assert_eq!(duration(text), Ok(Duration::from_secs_f64(seconds)), "{text}");
        }
        for bad in ["0", "-5", "1y", "abc", "inf", "400d"] {
            let err = parse(&["serve", "--keep-results", bad]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}: {err}");
        }
        for (flag, value) in [("--queue", "0"), ("--max-upload-mb", "0"), ("--port", "70000")] {
            let err = parse(&["serve", flag, value]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{flag} {value}: {err}");
        }
        let task_flag = parse(&["serve", "--prompt", "x"]).unwrap_err();
        assert_eq!(task_flag.kind(), clap::error::ErrorKind::UnknownArgument);
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

    const REPAINT: [&str; 9] = ["repaint", "--input", "a.wav", "--output", "b.wav", "--start", "1", "--end", "2"];

    /// The parse error of `flag value` (text2music for `--duration`, else repaint), which must be a value error.
    fn value_error(flag: &str, value: &str) -> String {
        let base: &[&str] =
            if flag == "--duration" { &["text2music", "--output", "o.wav", "--prompt", "p"] } else { &REPAINT };
        let err = parse(&[base, &[flag, value]].concat()).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{flag} {value}: {err}");
        err.to_string()
    }

    #[test]
    fn negative_numbers_reach_the_range_checks_instead_of_reading_as_flags() {
        for (flag, value, message) in [
            ("--strength", "-5", "-5 is out of range; give a number above 0 up to 1"),
            ("--crossfade-ms", "-5", "-5 is out of range; give a number from 0 up to 500"),
            ("--bpm", "-120", "-120 is out of range; give a number above 0"),
            ("--shift", "-1", "-1 is out of range; give a number above 0"),
            ("--steps", "-5", "-5 is not in 1..=1000"),
            ("--duration", "-5", "-5 is out of range; give a number above 0 up to 600"),
        ] {
            let err = value_error(flag, value);
            assert!(err.contains(message), "{flag} {value}: {err}");
        }
        let cover = parse(&["cover", "--input", "a", "--output", "b", "--prompt", "p", "--noise-strength", "-0.5"]);
        assert!(cover.unwrap_err().to_string().contains("-0.5 is out of range; give a number from 0 up to 1"));
    }

    #[test]
    fn unbounded_and_pointless_values_are_refused_at_parse_time() {
        for (flag, value) in [
            ("--crossfade-ms", "inf"),
            ("--crossfade-ms", "1e9"),
            ("--crossfade-ms", "NaN"),
            ("--crossfade-ms", "500.5"),
            ("--strength", "0"),
            ("--strength", "1.5"),
            ("--strength", "NaN"),
            ("--steps", "4294967295"),
            ("--steps", "1001"),
            ("--duration", "600.5"),
            ("--duration", "inf"),
            ("--shift", "inf"),
        ] {
            value_error(flag, value);
        }
        assert!(value_error("--crossfade-ms", "inf").contains("inf is out of range; give a number from 0 up to 500"));
        let edges =
            parse(&[&REPAINT[..], &["--crossfade-ms", "500", "--strength", "0.01", "--steps", "1000"]].concat())
                .unwrap();
        let Some(Command::Repaint(args)) = task(&edges) else { panic!("{edges:?}") };
        assert_eq!((args.crossfade_ms, args.strength, args.common.steps), (500.0, 0.01, Some(1000)));
    }
}
