//! The command line's flags as an engine configuration and a generation request.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::Read;
use std::path::Path;

use retake_engine::error::{EngineError, Result};
use retake_engine::model::prompt::LYRIC_MAX_TOKENS;
use retake_engine::model_source::{ModelSource, ModelSpec};
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Task};
use retake_engine::runtime::EngineConfig;

use super::args::{Command, CommonArgs, RepaintArgs};
use super::clip::SourceClip;

/// The lyric string the model was trained on for instrumentals.
const INSTRUMENTAL: &str = "[Instrumental]";
/// The largest lyrics file read: the model reads at most [`LYRIC_MAX_TOKENS`] tokens, a few bytes each.
const MAX_LYRICS_BYTES: u64 = 256 << 10;

/// The engine for one CLI job: the chosen model and variant, device and budget, a queue of one.
pub fn engine_config(common: &CommonArgs) -> EngineConfig {
    EngineConfig {
        model: ModelSpec {
            source: common.model.clone().map(ModelSource::Dir).unwrap_or_default(),
            variant: common.variant,
            dit_dir: common.dit_dir.clone(),
        },
        device: common.device,
        vram_budget: common.vram_budget,
        queue_capacity: 1,
    }
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
    let defaults = common.variant.defaults();
    let task = match command {
        Command::Repaint(args) => {
            if let Some(clip) = source {
                check_region(args, clip.duration_s())?;
            }
            Task::Repaint {
                ranges: vec![(args.start, args.end)],
                strength: args.strength,
                splice_crossfade_ms: (!args.no_splice).then_some(args.crossfade_ms),
            }
        }
        Command::Cover(args) => {
            Task::Cover { cover_strength: args.cover_strength, noise_strength: args.noise_strength, audio_codes: None }
        }
        Command::Text2Music(args) => Task::Text2Music { duration_s: args.duration },
    };
    Ok(GenerationRequest {
        task,
        mode: common.mode,
        source: source.map(|clip| clip.for_model.clone()),
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
        cfg_interval: CfgInterval::ALL,
        noise: None,
    })
}

/// The region must be a proper range that overlaps or touches the clip, as the engine requires: it may start at
/// the clip's very end or end at its very start to extend the clip there (and reach past either end).
fn check_region(args: &RepaintArgs, duration_s: f64) -> Result<()> {
    let (start, end) = (args.start, args.end);
    if !(start.is_finite() && end.is_finite() && start < end) {
        return Err(EngineError::invalid(format!("--start {start} must be a number before --end {end}")));
    }
    if start > duration_s || end < 0.0 {
        return Err(EngineError::invalid(format!(
            "the region {start}..{end} s misses the clip, which runs 0..{duration_s:.3} s; pick a range that \
             overlaps or touches it (start at most at {duration_s:.3} s, end at 0 s or later)"
        )));
    }
    Ok(())
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
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let mut text = String::new();
    File::open(path).map_err(io)?.take(MAX_LYRICS_BYTES + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_LYRICS_BYTES {
        return Err(EngineError::invalid(format!(
            "`{}` is larger than {} KiB, far more than the {LYRIC_MAX_TOKENS} tokens of lyrics the model reads; \
             pass the lyrics of this song only",
            path.display(),
            MAX_LYRICS_BYTES >> 10
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
        let xl = command(&[&t2m[..], &["--variant", "xl-turbo", "--dit-dir", "/m/xl"]].concat());
        let model = engine_config(xl.common()).model;
        assert_eq!((model.variant.name(), model.dit_dir), ("xl-turbo", Some("/m/xl".into())));
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
            check_region(&args, 4.0)
        };
        assert!(check("1", "2").is_ok());
        assert!(check("-1", "0.5").is_ok(), "extending the front is allowed");
        assert!(check("3.5", "6").is_ok(), "extending the end is allowed");
        assert!(check("2", "1").unwrap_err().to_string().contains("--start 2 must be a number before --end 1"));
        assert!(check("4", "5").is_ok(), "a region starting at the clip's end extends it");
        assert!(check("-2", "0").is_ok(), "a region ending at the clip's start extends it");
        assert!(check("4.001", "5").unwrap_err().to_string().contains("misses the clip, which runs 0..4.000 s"));
        assert!(check("-2", "-0.001").unwrap_err().to_string().contains("start at most at 4.000 s, end at 0 s"));
    }
}
