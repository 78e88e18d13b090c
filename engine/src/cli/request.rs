//! The command line's flags as an engine configuration and a generation request.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use retake_engine::audio::Audio;
use retake_engine::error::{EngineError, Result};
use retake_engine::model::audio_tokenizer::parse_audio_codes;
use retake_engine::model::prompt::LYRIC_MAX_TOKENS;
use retake_engine::model_source::{ModelSource, ModelSpec};
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Task};
use retake_engine::pipeline::timbre::checked_reference;
use retake_engine::remote::RemoteServer;
use retake_engine::runtime::EngineConfig;

use super::args::{Command, CommonArgs, EngineArgs};
use super::clip::SourceClip;

/// The lyric string the model was trained on for instrumentals.
const INSTRUMENTAL: &str = "[Instrumental]";
/// The largest lyrics file read: the model reads at most [`LYRIC_MAX_TOKENS`] tokens, a few bytes each.
const MAX_LYRICS_BYTES: u64 = 256 << 10;
/// The largest audio-codes file read: a 600 s song has 3000 codes of about 20 bytes each.
const MAX_CODES_BYTES: u64 = 256 << 10;
/// How an audio-code token opens (`<|audio_code_N|>`).
const CODE_OPEN: &str = "<|audio_code_";

/// The engine for one CLI job: the chosen model and variant, device and budget, a queue of one.
pub fn engine_config(common: &EngineArgs) -> EngineConfig {
    EngineConfig {
        model: ModelSpec {
            source: common.model.clone().map(ModelSource::Dir).unwrap_or_default(),
            variant: common.variant,
            dit_dir: common.dit_dir.clone(),
        },
        device: common.device,
        vram_budget: common.vram_budget,
        queue_capacity: 1,
        loras: common.loras.clone(),
        cpu_precision: common.precision.unwrap_or_default(),
        ..EngineConfig::default()
    }
}

/// The engine for one task: [`engine_config`], sending the job to `--server` when one is given.
pub fn task_engine_config(common: &CommonArgs) -> Result<EngineConfig> {
    let server = match &common.server {
        None => None,
        Some(url) => {
            let mut server = RemoteServer::new(url, common.api_key.clone()).map_err(EngineError::invalid)?;
            server.deadline = common.server_deadline.map(Duration::from_secs_f64);
            Some(server)
        }
    };
    Ok(EngineConfig { server, ..engine_config(&common.engine) })
}

/// A fresh seed from the OS's randomness (printed in the summary so the take can be repeated).
pub fn random_seed() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// True when the result keeps the source's own samples outside the edited region (a spliced repaint).
pub fn keeps_original(command: &Command) -> bool {
    matches!(command, Command::Repaint(args) if !args.no_splice)
}

/// The request for `command` on `source` (already at 48 kHz in the clip).
pub fn build(command: &Command, source: Option<&SourceClip>, seed: u64) -> Result<GenerationRequest> {
    let common = command.common();
    let defaults = common.engine.variant.defaults();
    let task = match command {
        Command::Repaint(args) => {
            let ranges = args.ranges();
            if let Some(clip) = source {
                check_regions(&ranges, clip.duration_s())?;
            }
            Task::Repaint {
                ranges,
                strength: args.strength,
                splice_crossfade_ms: (!args.no_splice).then_some(args.crossfade_ms),
            }
        }
        Command::Cover(args) => Task::Cover {
            cover_strength: args.cover_strength,
            noise_strength: args.noise_strength,
            audio_codes: args.audio_codes.as_deref().map(read_audio_codes).transpose()?,
        },
        Command::Text2Music(args) => Task::Text2Music { duration_s: args.duration },
    };
    Ok(GenerationRequest {
        task,
        mode: common.mode,
        source: source.map(|clip| clip.for_model.clone()),
        references: references(common)?,
        caption: command.prompt().to_owned(),
        lyrics: lyrics(common)?,
        language: common.language.clone(),
        metas: Metas {
            bpm: common.bpm,
            time_signature: common.time_signature.clone(),
            key: common.key.clone(),
            duration_s: None,
        },
        seed,
        steps: common.steps.map_or(defaults.steps, |steps| steps as usize),
        shift: common.shift.unwrap_or(defaults.shift),
        cfg_scale: common.cfg.unwrap_or(defaults.cfg_scale),
        cfg_interval: match common.cfg_interval.as_deref() {
            Some(&[start, end]) => CfgInterval { start, end },
            _ => CfgInterval::ALL,
        },
        noise: None,
    })
}

/// Every region must be a proper range that overlaps or touches the clip, as the engine requires: it may start at
/// the clip's very end or end at its very start to extend the clip there (and reach past either end). No two
/// regions may overlap (one may end where the next starts): the engine takes overlapping ranges as DiffSynth does,
/// as one region, which two `--range` flags rarely mean.
fn check_regions(ranges: &[(f64, f64)], duration_s: f64) -> Result<()> {
    for &(start, end) in ranges {
        if !(start.is_finite() && end.is_finite() && start < end) {
            return Err(EngineError::invalid(format!("the region {start}..{end} s must start before it ends")));
        }
        if start > duration_s || end < 0.0 {
            return Err(EngineError::invalid(format!(
                "the region {start}..{end} s misses the clip, which runs 0..{duration_s:.3} s; pick a range that \
                 overlaps or touches it (start at most at {duration_s:.3} s, end at 0 s or later)"
            )));
        }
    }
    let mut sorted = ranges.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(pair) = sorted.windows(2).find(|pair| pair[1].0 < pair[0].1) {
        let ((s0, e0), (s1, e1)) = (pair[0], pair[1]);
        return Err(EngineError::invalid(format!(
            "the regions {s0}..{e0} s and {s1}..{e1} s overlap; merge them into one --range or move one so it \
             starts where the other ends"
        )));
    }
    Ok(())
}

/// The `--reference` files at 48 kHz, each checked as the engine checks a timbre reference (long enough, not
/// silent) before any model loads.
fn references(common: &CommonArgs) -> Result<Vec<Audio>> {
    let read = |(index, path): (usize, &PathBuf)| {
        let audio = SourceClip::read(path)?.for_model;
        checked_reference(index, &audio)
            .map_err(|e| EngineError::invalid(format!("--reference `{}`: {e}", path.display())))?;
        Ok(audio)
    };
    common.references.iter().enumerate().map(read).collect()
}

/// Reads an audio-codes file of at most [`MAX_CODES_BYTES`]: text holding `<|audio_code_N|>` tokens (other text
/// between them is ignored, as in LM output). A file without a token, or with a token that is not
/// `<|audio_code_` + digits + `|>`, is refused naming what is wrong.
fn read_audio_codes(path: &Path) -> Result<String> {
    let most = "the 3000 codes of a 600 s song (5 a second); pass the codes of one song";
    let text = read_text(path, MAX_CODES_BYTES, most)?;
    let refuse = |what: String| EngineError::invalid(format!("audio codes `{}`: {what}", path.display()));
    for (at, _) in text.match_indices(CODE_OPEN) {
        let after = &text[at + CODE_OPEN.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !after[digits..].starts_with("|>") {
            let line = text[..at].matches('\n').count() + 1;
            let token: String = text[at..].chars().take_while(|c| !c.is_whitespace()).take(40).collect();
            return Err(refuse(format!(
                "`{token}` on line {line} is not an audio code; each code is written <|audio_code_N|> with N a number"
            )));
        }
    }
    if parse_audio_codes(&text, u32::MAX).is_empty() {
        return Err(refuse("holds no <|audio_code_N|> tokens; give the codes the ACE-Step LM wrote".into()));
    }
    Ok(text)
}

fn lyrics(common: &CommonArgs) -> Result<String> {
    match (&common.lyrics, &common.lyrics_file) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(path)) => read_lyrics(path),
        (None, None) => Ok(INSTRUMENTAL.into()),
    }
}

/// Reads a lyrics file of at most [`MAX_LYRICS_BYTES`], refusing a larger one before reading it all.
fn read_lyrics(path: &Path) -> Result<String> {
    let most = format!("the {LYRIC_MAX_TOKENS} tokens of lyrics the model reads; pass the lyrics of this song only");
    read_text(path, MAX_LYRICS_BYTES, &most)
}

/// Reads a text file of at most `max_bytes`, refusing a larger one before reading it all; `most` says what the
/// model reads at most and what to pass instead.
fn read_text(path: &Path, max_bytes: u64, most: &str) -> Result<String> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let mut text = String::new();
    File::open(path).map_err(io)?.take(max_bytes + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > max_bytes {
        return Err(EngineError::invalid(format!(
            "`{}` is larger than {} KiB, far more than {most}",
            path.display(),
            max_bytes >> 10
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Invocation};

    fn command(args: &[&str]) -> Command {
        let Invocation::Task(command) = Cli::try_parse_from([&["retake"], args].concat()).unwrap().invocation else {
            panic!("{args:?} is not a task")
        };
        *command
    }

    fn repaint(start: &str, end: &str) -> Command {
        command(&["repaint", "--input", "i.wav", "--output", "o.wav", "--start", start, "--end", end, "--no-splice"])
    }

    #[test]
    fn text2music_flags_become_the_request() {
        let cmd = command(&[
            "text2music",
            "--output",
            "o.wav",
            "--duration",
            "12.5",
            "--prompt",
            "dub techno",
            "--bpm",
            "120",
            "--key",
            "D minor",
            "--timesig",
            "4",
            "--language",
            "en",
            "--lyrics",
            "la la",
            "--steps",
            "4",
            "--shift",
            "2",
        ]);
        let request = build(&cmd, None, 9).unwrap();
        assert_eq!(request.task, Task::Text2Music { duration_s: 12.5 });
        assert_eq!(
            (request.caption.as_str(), request.lyrics.as_str(), request.language.as_str()),
            ("dub techno", "la la", "en")
        );
        let metas =
            Metas { bpm: Some(120.0), time_signature: Some("4".into()), key: Some("D minor".into()), duration_s: None };
        assert_eq!(request.metas, metas);
        assert_eq!((request.seed, request.steps, request.shift, request.cfg_scale), (9, 4, 2.0, 1.0));
        assert!(request.source.is_none());
    }

    #[test]
    fn steps_shift_and_cfg_default_to_the_variants_and_flags_override_them() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "1", "--prompt", "p"];
        let settings = |extra: &[&str]| {
            let request = build(&command(&[&t2m[..], extra].concat()), None, 0).unwrap();
            (request.steps, request.shift, request.cfg_scale)
        };
        assert_eq!(settings(&[]), (8, 3.0, 1.0));
        assert_eq!(settings(&["--variant", "turbo-shift1"]), (8, 1.0, 1.0));
        assert_eq!(settings(&["--variant", "sft"]), (50, 3.0, 4.0));
        assert_eq!(settings(&["--variant", "xl-base", "--steps", "30", "--shift", "2", "--cfg", "6"]), (30, 2.0, 6.0));
        let interval = |extra: &[&str]| build(&command(&[&t2m[..], extra].concat()), None, 0).unwrap().cfg_interval;
        assert_eq!(interval(&[]), CfgInterval::ALL);
        assert_eq!(interval(&["--cfg-interval", "0.3", "0.9"]), CfgInterval { start: 0.3, end: 0.9 });
        let xl = command(&[&t2m[..], &["--variant", "xl-turbo", "--dit-dir", "/m/xl"]].concat());
        let model = engine_config(&xl.common().engine).model;
        assert_eq!((model.variant.name(), model.dit_dir), ("xl-turbo", Some("/m/xl".into())));
    }

    #[test]
    fn the_precision_flag_reaches_the_engine_config_and_another_value_is_refused_naming_both() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "1", "--prompt", "p", "--precision"];
        let precision = |value: &str| engine_config(&command(&[&t2m[..], &[value]].concat()).common().engine);
        assert_eq!(precision("f32").cpu_precision, retake_engine::model::linear::CpuPrecision::F32);
        assert_eq!(precision("bf16").cpu_precision, retake_engine::model::linear::CpuPrecision::Bf16);
        let err = Cli::try_parse_from([&["retake"], &t2m[..], &["fp16"]].concat()).unwrap_err().to_string();
        assert!(err.contains("`fp16` is not a CPU precision; use f32 or bf16"), "{err}");
    }

    #[test]
    fn a_server_sends_the_job_there_with_its_key_and_deadline_and_without_one_it_runs_here() {
        let t2m = ["text2music", "--output", "o.wav", "--duration", "1", "--prompt", "p"];
        let remote = ["--server", "http://gpu-box:8001", "--api-key", " k ", "--server-deadline", "2.5"];
        let config = task_engine_config(command(&[&t2m[..], &remote[..]].concat()).common()).unwrap();
        let server = config.server.unwrap();
        assert_eq!((server.url.as_str(), server.api_key.as_deref()), ("http://gpu-box:8001", Some("k")));
        assert_eq!(server.deadline, Some(Duration::from_millis(2500)));
        let keyless = task_engine_config(command(&[&t2m[..], &remote[..2]].concat()).common()).unwrap();
        assert_eq!(keyless.server.map(|s| (s.api_key, s.deadline)), Some((None, None)));
        assert_eq!(task_engine_config(command(&t2m).common()).unwrap().server, None);
    }

    #[test]
    fn lyrics_default_to_instrumental_or_come_from_the_file() {
        let cmd = command(&["text2music", "--output", "o.wav", "--duration", "1", "--prompt", "p"]);
        assert_eq!(build(&cmd, None, 0).unwrap().lyrics, "[Instrumental]");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lyrics.txt");
        std::fs::write(&file, "[verse]\nhello").unwrap();
        let with_lyrics = |file: &std::path::Path| {
            let args = ["text2music", "--output", "o.wav", "--duration", "1", "--prompt", "p", "--lyrics-file"];
            command(&[&args[..], &[file.to_str().unwrap()]].concat())
        };
        assert_eq!(build(&with_lyrics(&file), None, 0).unwrap().lyrics, "[verse]\nhello");
        let missing = dir.path().join("nope.txt");
        let cmd = with_lyrics(&missing);
        assert!(matches!(build(&cmd, None, 0), Err(EngineError::Io { path, .. }) if path == missing));
    }

    #[test]
    fn a_lyrics_file_far_larger_than_the_model_reads_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (fits, too_big) = (dir.path().join("fits.txt"), dir.path().join("book.txt"));
        std::fs::write(&fits, "la ".repeat(80_000)).unwrap();
        std::fs::write(&too_big, "la ".repeat(100_000)).unwrap();
        assert_eq!(read_lyrics(&fits).unwrap().len(), 240_000);
        let err = read_lyrics(&too_big).unwrap_err().to_string();
        assert!(err.contains("book.txt` is larger than 256 KiB, far more than the 2048 tokens"), "{err}");
    }

    #[test]
    fn repaint_splices_unless_told_not_to() {
        let cmd = command(&[
            "repaint",
            "--input",
            "i.wav",
            "--output",
            "o.wav",
            "--start",
            "1",
            "--end",
            "2",
            "--crossfade-ms",
            "50",
        ]);
        assert!(keeps_original(&cmd));
        let Task::Repaint { ranges, strength, splice_crossfade_ms } = build(&cmd, None, 0).unwrap().task else {
            panic!()
        };
        assert_eq!((ranges, strength, splice_crossfade_ms), (vec![(1.0, 2.0)], 1.0, Some(50.0)));
        let unspliced = repaint("1", "2");
        assert!(!keeps_original(&unspliced));
        assert!(matches!(build(&unspliced, None, 0).unwrap().task, Task::Repaint { splice_crossfade_ms: None, .. }));
    }

    #[test]
    fn a_region_must_be_ordered_and_overlap_the_clip() {
        let check = |start: &str, end: &str| {
            let Command::Repaint(args) = repaint(start, end) else { unreachable!() };
            check_regions(&args.ranges(), 4.0)
        };
        assert!(check("1", "2").is_ok());
        assert!(check("-1", "0.5").is_ok(), "extending the front is allowed");
        assert!(check("3.5", "6").is_ok(), "extending the end is allowed");
        assert!(check("2", "1").unwrap_err().to_string().contains("the region 2..1 s must start before it ends"));
        assert!(check("4", "5").is_ok(), "a region starting at the clip's end extends it");
        assert!(check("-2", "0").is_ok(), "a region ending at the clip's start extends it");
        assert!(check("4.001", "5").unwrap_err().to_string().contains("misses the clip, which runs 0..4.000 s"));
        assert!(check("-2", "-0.001").unwrap_err().to_string().contains("start at most at 4.000 s, end at 0 s"));
        let overlap = check_regions(&[(1.5, 2.0), (-0.5, 1.0), (0.8, 1.2)], 4.0).unwrap_err().to_string();
        assert!(
            overlap.contains("the regions -0.5..1 s and 0.8..1.2 s overlap; merge them into one --range"),
            "{overlap}"
        );
        assert!(check_regions(&[(1.0, 2.0), (0.0, 1.0)], 4.0).is_ok(), "a region may end where the next starts");
    }

    #[test]
    fn audio_code_files_need_well_formed_tokens_and_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let good = "<|audio_code_42141|><|audio_code_36019|> (ignored text)\n<|audio_code_21801|>\n";
        assert_eq!(read_audio_codes(&file("good.txt", good)).unwrap(), good);
        let err =
            read_audio_codes(&file("bad.txt", "<|audio_code_1|>\n<|audio_code_12> <|audio_code_3|>")).unwrap_err();
        assert!(err.to_string().contains("bad.txt`: `<|audio_code_12>` on line 2 is not an audio code"), "{err}");
        let err = read_audio_codes(&file("word.txt", "<|audio_code_x|>")).unwrap_err();
        assert!(err.to_string().contains("`<|audio_code_x|>` on line 1 is not an audio code"), "{err}");
        let err = read_audio_codes(&file("none.txt", "a caption, no codes")).unwrap_err();
        assert!(err.to_string().contains("none.txt`: holds no <|audio_code_N|> tokens"), "{err}");
        let err = read_audio_codes(&file("huge.txt", &"<|audio_code_1|>".repeat(20_000))).unwrap_err();
        assert!(err.to_string().contains("is larger than 256 KiB, far more than the 3000 codes"), "{err}");
    }

    /// The variant fixture set's two-range repaint case (one range starting before 0 s) given to the CLI as the
    /// `--range` flags and the other flags a user would type: the request they build, with the case's noise and
    /// the metas duration the CLI has no flag for, reproduces the case's audio within the manifest's tolerance.
    #[test]
    fn the_two_range_repaint_case_runs_from_the_cli_flags() {
        use candle_core::{DType, Device};
        use retake_engine::audio::MODEL_SAMPLE_RATE;
        use retake_engine::model::checkpoint::{Checkpoint, ModelDirs};
        use retake_engine::model::variant::Variant;
        use retake_engine::pipeline::Generator;

        let set = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures-variants");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
        let case = manifest["cases"].as_array().unwrap().iter().find(|c| c["name"] == "e2e_xl_repaint_two_ranges_cfg4");
        let case = case.expect("the case is in the manifest");
        let args = &case["args"];
        let arg = |key: &str| match &args[key] {
            serde_json::Value::String(text) => text.clone(),
            number => number.to_string(),
        };
        let ranges: Vec<String> = args["repainting_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{}:{}", r[0].as_f64().unwrap(), r[1].as_f64().unwrap()))
            .collect();
        assert_eq!(ranges, ["-0.1:0.3", "1.5:2"]);
        let mut flags: Vec<String> =
            ["repaint", "--input", "in.wav", "--output", "out.wav", "--no-splice", "--mode", "reference"]
                .map(String::from)
                .to_vec();
        for range in &ranges {
            flags.extend(["--range".into(), range.clone()]);
        }
        for (flag, key) in [
            ("--variant", None),
            ("--prompt", Some("prompt")),
            ("--lyrics", Some("lyrics")),
            ("--strength", Some("repainting_strength")),
            ("--bpm", Some("bpm")),
            ("--key", Some("keyscale")),
            ("--timesig", Some("timesignature")),
            ("--language", Some("vocal_language")),
            ("--seed", Some("seed")),
            ("--steps", Some("num_inference_steps")),
            ("--shift", Some("shift")),
            ("--cfg", Some("cfg_scale")),
        ] {
            flags.extend([flag.to_string(), key.map_or("xl-base".into(), arg)]);
        }
        let tensors = candle_core::safetensors::load(set.join(case["file"].as_str().unwrap()), &Device::Cpu).unwrap();
        let source = Audio::new(MODEL_SAMPLE_RATE, tensors["in.src_audio"].to_vec2().unwrap());
        let clip = SourceClip { path: "in.wav".into(), original: source.clone(), for_model: source };
        let cmd = command(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        let mut request = build(&cmd, Some(&clip), cmd.common().seed.expect("--seed is given")).unwrap();
        assert_eq!(
            request.task,
            Task::Repaint { ranges: vec![(-0.1, 0.3), (1.5, 2.0)], strength: 1.0, splice_crossfade_ms: None }
        );
        assert_eq!((request.seed, request.steps, request.shift, request.cfg_scale), (103, 10, 3.0, 4.0));
        request.noise = Some(tensors["in.noise"].clone());
        request.metas.duration_s = args["duration"].as_f64();

        let dirs = ModelDirs {
            main: set.join(manifest["main_models_root"].as_str().unwrap()),
            dit: set.join(manifest["models_root"].as_str().unwrap()).join(case["checkpoint"].as_str().unwrap()),
        };
        let checkpoint = Checkpoint::open_dirs(&dirs, DType::F32, &Device::Cpu).unwrap().with_variant(Variant::XlBase);
        let mut generator = Generator::new(checkpoint, None).unwrap();
        let output = generator.generate(&request, &mut |_| std::ops::ControlFlow::Continue(())).unwrap();
        let want: Vec<Vec<f32>> = tensors["out.audio"].to_vec2().unwrap();
        let (atol, rtol) = (case["tolerance"]["atol"].as_f64().unwrap(), case["tolerance"]["rtol"].as_f64().unwrap());
        assert_eq!(
            output.audio.channels.iter().map(Vec::len).collect::<Vec<_>>(),
            want.iter().map(Vec::len).collect::<Vec<_>>()
        );
        for (got, want) in output.audio.channels.iter().zip(&want) {
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                assert!(((g - w) as f64).abs() <= atol + rtol * (w as f64).abs(), "sample {i}: {g} vs {w}");
            }
        }
    }
}
