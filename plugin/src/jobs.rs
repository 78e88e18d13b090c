//! Jobs: turning the region and the parameters into an engine request (region copied from the capture with
//! context, resampled to 48 kHz, metas from the host), and cutting the engine's result back to the region.

use nih_plug::prelude::Enum;

use retake_engine::audio::{self, Audio, MODEL_SAMPLE_RATE};
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task};

use crate::capture::CaptureStore;
use crate::error::{PluginError, Result};
use crate::params::{RetakeParams, TaskMode};
use crate::region::Region;
use crate::takes;
use crate::transport::TransportSnapshot;

/// Repaint sends up to this much captured audio on each side of the region as context.
pub const MAX_CONTEXT_S: f64 = 30.0;
/// ACE-Step 1.5 turbo: fixed 8 steps, shift 3, no guidance (docs/acestep-model.md §9).
const TURBO_STEPS: usize = 8;
const TURBO_SHIFT: f64 = 3.0;

/// The job-relevant parameter values, read once when the job starts.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Repaint or cover.
    pub mode: TaskMode,
    /// Repaint strength or cover strength.
    pub strength: f32,
    /// Noise seed.
    pub seed: u64,
    /// Keyscale for the metas (`None` = let the model decide).
    pub key: Option<String>,
    /// Style caption.
    pub caption: String,
    /// Lyrics; empty means instrumental.
    pub lyrics: String,
    /// Splice crossfade at the region edges.
    pub xfade_ms: f32,
}

impl JobSettings {
    /// Reads the settings from the parameters. Not for the audio thread (it locks the prompt and lyrics).
    pub fn from_params(params: &RetakeParams) -> Self {
        Self {
            mode: params.mode.value(),
            strength: params.strength.value(),
            seed: params.seed.value().max(0) as u64,
            key: params.key.value().keyscale(),
            caption: params.prompt.read().trim().to_string(),
            lyrics: params.lyrics.read().trim().to_string(),
            xfade_ms: params.xfade_ms.value(),
        }
    }

    /// One line for the takes list.
    pub fn summary(&self) -> String {
        let mode = TaskMode::variants()[self.mode.to_index()].to_lowercase();
        let caption = match self.caption.chars().count() {
            0 => "no caption".to_string(),
            1..=60 => format!("\"{}\"", self.caption),
            _ => format!("\"{}…\"", self.caption.chars().take(60).collect::<String>()),
        };
        let key = self.key.as_deref().unwrap_or("key auto");
        format!("{mode} · strength {:.2} · {caption} · {key}", self.strength)
    }
}

/// Where a job's region sits in the audio that was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The region on the host timeline.
    pub region: Region,
    /// Host timeline frame where the sent audio starts (before the region when there is context).
    pub source_start: i64,
}

/// A request ready for the engine and where its result belongs.
#[derive(Debug, Clone)]
pub struct PreparedJob {
    /// What the engine is asked for.
    pub request: GenerationRequest,
    /// Where the result goes.
    pub placement: Placement,
}

/// The captured span the job sends: the region, plus for repaint up to [`MAX_CONTEXT_S`] of contiguous
/// captured audio on each side.
fn source_range(capture: &CaptureStore, region: Region, mode: TaskMode) -> std::ops::Range<i64> {
    if mode == TaskMode::Cover {
        return region.range();
    }
    let context = (MAX_CONTEXT_S * f64::from(region.sample_rate)).round() as i64;
    let earliest = (region.start - context).max(0);
    let start = capture.last_where(earliest..region.start, false).map_or(earliest, |gap| gap + 1);
    let latest = region.end + context;
    let end = capture.first_where(region.end..latest, false).unwrap_or(latest);
    start..end
}

/// Builds the engine request for `region`: checks it was captured, copies it (with context for repaint),
/// converts it to 48 kHz and fills in the task, prompt and metas (tempo and time signature from the host).
pub fn prepare_job(
    capture: &CaptureStore,
    region: Region,
    settings: &JobSettings,
    transport: &TransportSnapshot,
) -> Result<PreparedJob> {
    if region.sample_rate != capture.sample_rate() {
        return Err(PluginError::RateChangedSinceCapture);
    }
    capture.ensure_captured(region.range())?;
    let range = source_range(capture, region, settings.mode);
    let host_audio = Audio::new(region.sample_rate, capture.read(range.clone())?);
    let source = audio::resample(&host_audio, MODEL_SAMPLE_RATE)?;
    audio::check_finite(&source, "the captured region")?;
    let rate = f64::from(region.sample_rate);
    let task = match settings.mode {
        TaskMode::Repaint => Task::Repaint {
            ranges: vec![((region.start - range.start) as f64 / rate, (region.end - range.start) as f64 / rate)],
            strength: settings.strength,
            splice_crossfade_ms: Some(f64::from(settings.xfade_ms)),
        },
        TaskMode::Cover => Task::Cover { cover_strength: settings.strength, noise_strength: 0.0, audio_codes: None },
    };
    let lyrics = if settings.lyrics.is_empty() { "[Instrumental]".to_string() } else { settings.lyrics.clone() };
    let request = GenerationRequest {
        task,
        mode: Mode::Studio,
        source: Some(source),
        caption: settings.caption.clone(),
        lyrics,
        language: "unknown".to_string(),
        metas: Metas {
            bpm: transport.tempo,
            time_signature: transport.time_signature.map(|(numerator, _)| numerator.to_string()),
            key: settings.key.clone(),
            duration_s: None,
        },
        seed: settings.seed,
        steps: TURBO_STEPS,
        shift: TURBO_SHIFT,
        cfg_scale: 1.0,
        cfg_interval: CfgInterval::ALL,
        references: Vec::new(),
        noise: None,
    };
    Ok(PreparedJob { request, placement: Placement { region, source_start: range.start } })
}

/// Cuts the region out of the engine's 48 kHz `output` (which covers the whole sent source): returns the
/// region at 48 kHz and at the host rate, each exactly the region's length.
pub fn take_audio(output: &Audio, placement: &Placement) -> Result<(Audio, Audio)> {
    let region = placement.region;
    let offset = (region.start - placement.source_start) as usize;
    let host = takes::excerpt(&audio::resample(output, region.sample_rate)?, offset, region.frames());
    let to_model = |frames: usize| {
        (frames as f64 * f64::from(output.sample_rate) / f64::from(region.sample_rate)).round() as usize
    };
    let model = takes::excerpt(output, to_model(offset), to_model(region.frames()));
    Ok((model, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 44_100;

    /// A store with `[start, end)` captured as a recognisable ramp.
    fn captured(start: i64, end: i64) -> CaptureStore {
        let store = CaptureStore::new(2, RATE, 120.0);
        let frames = (end - start) as usize;
        let ramp: Vec<f32> = (0..frames).map(|i| ((start + i as i64) % 1000) as f32 * 1e-3).collect();
        store.write(start, &[ramp.clone(), ramp]);
        store
    }

    fn settings(mode: TaskMode) -> JobSettings {
        JobSettings {
            mode,
            strength: 0.7,
            seed: 5,
            key: Some("D minor".into()),
            caption: "warm tape".into(),
            lyrics: String::new(),
            xfade_ms: 40.0,
        }
    }

    fn region(start_s: f64, end_s: f64) -> Region {
        let frames = |s: f64| (s * f64::from(RATE)) as i64;
        Region { start: frames(start_s), end: frames(end_s), sample_rate: RATE }
    }

    fn transport() -> TransportSnapshot {
        TransportSnapshot { tempo: Some(93.0), time_signature: Some((3, 4)), ..TransportSnapshot::default() }
    }

    #[test]
    fn repaint_sends_up_to_thirty_seconds_of_captured_context_each_side() {
        // Captured 5..80 s; region 40..44 s: 30 s of context on each side.
        let capture = captured(5 * RATE as i64, 80 * RATE as i64);
        let job = prepare_job(&capture, region(40.0, 44.0), &settings(TaskMode::Repaint), &transport()).unwrap();
        assert_eq!(job.placement.source_start, 10 * RATE as i64);
        let source = job.request.source.as_ref().unwrap();
        assert_eq!(source.sample_rate, MODEL_SAMPLE_RATE);
        assert_eq!(source.len(), 64 * MODEL_SAMPLE_RATE as usize);
        let Task::Repaint { ranges, strength, splice_crossfade_ms } = &job.request.task else { panic!("not repaint") };
        assert_eq!(ranges, &vec![(30.0, 34.0)]);
        assert_eq!((*strength, *splice_crossfade_ms), (0.7, Some(40.0)));
    }

    #[test]
    fn repaint_context_stops_at_capture_gaps() {
        // Captured 8..50 s only: left context 2 s, right context 6 s.
        let capture = captured(8 * RATE as i64, 50 * RATE as i64);
        let job = prepare_job(&capture, region(10.0, 44.0), &settings(TaskMode::Repaint), &transport()).unwrap();
        assert_eq!(job.placement.source_start, 8 * RATE as i64);
        let Task::Repaint { ranges, .. } = &job.request.task else { panic!("not repaint") };
        assert_eq!(ranges, &vec![(2.0, 36.0)]);
        assert_eq!(job.request.source.as_ref().unwrap().len(), 42 * MODEL_SAMPLE_RATE as usize);
    }

    #[test]
    fn cover_sends_exactly_the_region_with_host_metas() {
        let capture = captured(0, 20 * RATE as i64);
        let job = prepare_job(&capture, region(2.0, 6.0), &settings(TaskMode::Cover), &transport()).unwrap();
        assert_eq!(job.placement.source_start, 2 * RATE as i64);
        assert_eq!(job.request.source.as_ref().unwrap().len(), 4 * MODEL_SAMPLE_RATE as usize);
        assert!(matches!(job.request.task, Task::Cover { cover_strength, .. } if cover_strength == 0.7));
        assert_eq!(job.request.metas.bpm, Some(93.0));
        assert_eq!(job.request.metas.time_signature.as_deref(), Some("3"));
        assert_eq!(job.request.metas.key.as_deref(), Some("D minor"));
        assert_eq!(job.request.lyrics, "[Instrumental]");
        assert_eq!((job.request.seed, job.request.mode), (5, Mode::Studio));
    }

    #[test]
    fn a_region_not_fully_captured_is_refused() {
        let capture = captured(0, 3 * RATE as i64);
        let err = prepare_job(&capture, region(2.0, 6.0), &settings(TaskMode::Cover), &transport()).unwrap_err();
        assert!(err.to_string().contains("not fully captured (nothing recorded at 3.00–6.00 s)"), "{err}");
    }

    #[test]
    fn take_audio_cuts_the_region_out_of_the_result_at_both_rates() {
        let placement = Placement { region: region(2.0, 3.0), source_start: RATE as i64 };
        // 3 s of 48 kHz output whose second second is a constant 0.5.
        let mut samples = vec![0.0f32; 3 * 48_000];
        samples[48_000..96_000].fill(0.5);
        let output = Audio::new(48_000, vec![samples.clone(), samples]);
        let (model, host) = take_audio(&output, &placement).unwrap();
        assert_eq!((model.sample_rate, model.len()), (48_000, 48_000));
        assert!(model.channels[0].iter().all(|&x| x == 0.5));
        assert_eq!((host.sample_rate, host.len()), (RATE, RATE as usize));
        // Away from the edges (resampler ringing) the host-rate audio is the constant too.
        assert!(host.channels[0][100..RATE as usize - 100].iter().all(|&x| (x - 0.5).abs() < 1e-3));
    }

    #[test]
    fn summary_names_task_strength_caption_and_key() {
        assert_eq!(settings(TaskMode::Cover).summary(), "cover · strength 0.70 · \"warm tape\" · D minor");
        let untitled = JobSettings { caption: String::new(), key: None, ..settings(TaskMode::Repaint) };
        assert_eq!(untitled.summary(), "repaint · strength 0.70 · no caption · key auto");
    }
}
