//! Jobs: turning the region and the parameters into an engine request (region copied from the capture with
//! context, resampled to 48 kHz, metas from the host), and cutting the engine's result back to the region.

use nih_plug::prelude::Enum;

use retake_engine::audio::{self, Audio, MODEL_SAMPLE_RATE};
use retake_engine::model::variant::Variant;
use retake_engine::pipeline::request::{CfgInterval, GenerationRequest, Metas, Mode, Task};

use crate::capture::CaptureStore;
use crate::error::{PluginError, Result};
use crate::params::{RetakeParams, TaskMode};
use crate::region::Region;
use crate::takes;
use crate::transport::TransportSnapshot;

/// Repaint sends up to this much captured audio on each side of the region as context.
pub const MAX_CONTEXT_S: f64 = 30.0;

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
    /// Diffusion steps.
    pub steps: usize,
    /// Schedule shift.
    pub shift: f64,
    /// Guidance scale (1 = off).
    pub cfg_scale: f64,
    /// Cover noise strength.
    pub cover_noise: f32,
    /// Vocal language of the lyrics.
    pub language: String,
    /// The checkpoint variant the job runs on.
    pub variant: Variant,
}

impl JobSettings {
    /// Reads the settings from the parameters for a job on `variant`: steps, shift and guidance are the
    /// variant's defaults while Variant defaults is on, else the parameters'; a turbo variant always runs at
    /// guidance 1 (the engine refuses more). Not for the audio thread (it locks the prompt and lyrics).
    pub fn from_params(params: &RetakeParams, variant: Variant) -> Self {
        let defaults = variant.defaults();
        let (steps, shift, cfg_scale) = if params.variant_defaults.value() {
            (defaults.steps, defaults.shift, defaults.cfg_scale)
        } else {
            let guidance = if variant.is_turbo() { 1.0 } else { f64::from(params.guidance.value()) };
            (params.steps.value().max(1) as usize, f64::from(params.shift.value()), guidance)
        };
        Self {
            steps,
            shift,
            cfg_scale,
            cover_noise: params.cover_noise.value(),
            language: params.language.read().clone(),
            mode: params.mode.value(),
            strength: params.strength.value(),
            seed: params.seed.value().max(0) as u64,
            key: params.key.value().keyscale(),
            caption: params.prompt.read().trim().to_string(),
            lyrics: params.lyrics.read().trim().to_string(),
            xfade_ms: params.xfade_ms.value(),
            variant,
        }
    }

    /// One line for the takes list (the editor shows it when the pointer rests on a take's lane).
    pub fn summary(&self) -> String {
        let mode = TaskMode::variants()[self.mode.to_index()].to_lowercase();
        let caption = match self.caption.chars().count() {
            0 => "no caption".to_string(),
            1..=60 => format!("\"{}\"", self.caption),
            _ => format!("\"{}…\"", self.caption.chars().take(60).collect::<String>()),
        };
        let key = self.key.as_deref().unwrap_or("key auto");
        let guidance =
            if self.cfg_scale == 1.0 { String::new() } else { format!(" · guidance {:.1}", self.cfg_scale) };
        let sampling = format!("{} steps · shift {:.1}{guidance}", self.steps, self.shift);
        let variant = self.variant;
        match self.mode {
            TaskMode::Text2Music => format!("{variant} · {mode} · {caption} · {key} · {sampling}"),
            _ => format!("{variant} · {mode} · strength {:.2} · {caption} · {key} · {sampling}", self.strength),
        }
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
    if mode != TaskMode::Repaint {
        return region.range();
    }
    let context = (MAX_CONTEXT_S * f64::from(region.sample_rate)).round() as i64;
    let earliest = (region.start - context).max(0);
    let start = capture.last_where(earliest..region.start, false).map_or(earliest, |gap| gap + 1);
    let latest = region.end + context;
    let end = capture.first_where(region.end..latest, false).unwrap_or(latest);
    start..end
}

/// Builds the engine request for `region`: for repaint and cover checks it was captured, copies it (with context
/// for repaint) and converts it to 48 kHz; text2music sends no audio and asks for the region's length. Fills in
/// the task, prompt, metas (tempo and time signature from the host), sampling settings and the timbre
/// `references` (48 kHz).
pub fn prepare_job(
    capture: &CaptureStore,
    region: Region,
    settings: &JobSettings,
    transport: &TransportSnapshot,
    references: Vec<Audio>,
) -> Result<PreparedJob> {
    if region.sample_rate != capture.sample_rate() {
        return Err(PluginError::RateChangedSinceCapture);
    }
    let rate = f64::from(region.sample_rate);
    let (source, range) = if settings.mode == TaskMode::Text2Music {
        (None, region.range())
    } else {
        capture.ensure_captured(region.range())?;
        let range = source_range(capture, region, settings.mode);
        let host_audio = Audio::new(region.sample_rate, capture.read(range.clone())?);
        let source = audio::resample(&host_audio, MODEL_SAMPLE_RATE)?;
        audio::check_finite(&source, "the captured region")?;
        (Some(source), range)
    };
    let task = match settings.mode {
        TaskMode::Repaint => Task::Repaint {
            ranges: vec![((region.start - range.start) as f64 / rate, (region.end - range.start) as f64 / rate)],
            strength: settings.strength,
            splice_crossfade_ms: Some(f64::from(settings.xfade_ms)),
        },
        TaskMode::Cover => {
            Task::Cover { cover_strength: settings.strength, noise_strength: settings.cover_noise, audio_codes: None }
        }
        TaskMode::Text2Music => Task::Text2Music { duration_s: region.frames() as f64 / rate },
    };
    let lyrics = if settings.lyrics.is_empty() { "[Instrumental]".to_string() } else { settings.lyrics.clone() };
    let request = GenerationRequest {
        task,
        mode: Mode::Studio,
        source,
        caption: settings.caption.clone(),
        lyrics,
        language: settings.language.clone(),
        metas: Metas {
            bpm: transport.tempo,
            time_signature: transport.time_signature.map(|(numerator, _)| numerator.to_string()),
            key: settings.key.clone(),
            duration_s: None,
        },
        seed: settings.seed,
        steps: settings.steps,
        shift: settings.shift,
        cfg_scale: settings.cfg_scale,
        cfg_interval: CfgInterval::ALL,
        references,
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
    use nih_plug::prelude::{Param, ParamPtr};

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
            steps: 8,
            shift: 3.0,
            cfg_scale: 1.0,
            cover_noise: 0.25,
            language: "ja".into(),
            variant: Variant::Turbo,
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
        let job =
            prepare_job(&capture, region(40.0, 44.0), &settings(TaskMode::Repaint), &transport(), Vec::new()).unwrap();
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
        let job =
            prepare_job(&capture, region(10.0, 44.0), &settings(TaskMode::Repaint), &transport(), Vec::new()).unwrap();
        assert_eq!(job.placement.source_start, 8 * RATE as i64);
        let Task::Repaint { ranges, .. } = &job.request.task else { panic!("not repaint") };
        assert_eq!(ranges, &vec![(2.0, 36.0)]);
        assert_eq!(job.request.source.as_ref().unwrap().len(), 42 * MODEL_SAMPLE_RATE as usize);
    }

    #[test]
    fn cover_sends_exactly_the_region_with_host_metas() {
        let capture = captured(0, 20 * RATE as i64);
        let job =
            prepare_job(&capture, region(2.0, 6.0), &settings(TaskMode::Cover), &transport(), Vec::new()).unwrap();
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
        let err =
            prepare_job(&capture, region(2.0, 6.0), &settings(TaskMode::Cover), &transport(), Vec::new()).unwrap_err();
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
    fn summary_names_variant_task_strength_caption_and_key() {
        assert_eq!(
            settings(TaskMode::Cover).summary(),
            "turbo · cover · strength 0.70 · \"warm tape\" · D minor · 8 steps · shift 3.0"
        );
        let untitled = JobSettings { caption: String::new(), key: None, ..settings(TaskMode::Repaint) };
        assert_eq!(untitled.summary(), "turbo · repaint · strength 0.70 · no caption · key auto · 8 steps · shift 3.0");
        let guided =
            JobSettings { steps: 50, cfg_scale: 4.0, variant: Variant::XlBase, ..settings(TaskMode::Text2Music) };
        assert_eq!(
            guided.summary(),
            "xl-base · text2music · \"warm tape\" · D minor · 50 steps · shift 3.0 · guidance 4.0"
        );
    }

    #[test]
    fn text2music_sends_no_audio_and_asks_for_the_regions_length_even_where_nothing_was_captured() {
        let capture = captured(0, RATE as i64);
        let job =
            prepare_job(&capture, region(2.0, 6.5), &settings(TaskMode::Text2Music), &transport(), Vec::new()).unwrap();
        assert!(job.request.source.is_none());
        assert!(matches!(job.request.task, Task::Text2Music { duration_s } if duration_s == 4.5));
        assert_eq!(job.placement, Placement { region: region(2.0, 6.5), source_start: 2 * RATE as i64 });
        // The engine's result covers the region from its start: take_audio cuts it from offset 0.
        let output = Audio::new(48_000, vec![vec![0.5; 5 * 48_000]; 2]);
        let (model, host) = take_audio(&output, &job.placement).unwrap();
        assert_eq!((model.len(), host.len()), (216_000, region(2.0, 6.5).frames()));
    }

    #[test]
    fn cover_noise_language_sampling_and_references_reach_the_request() {
        let capture = captured(0, 20 * RATE as i64);
        let reference = Audio::new(48_000, vec![vec![0.1; 48_000]; 2]);
        let guided = JobSettings { steps: 12, shift: 2.5, cfg_scale: 4.0, ..settings(TaskMode::Cover) };
        let job = prepare_job(&capture, region(2.0, 6.0), &guided, &transport(), vec![reference.clone()]).unwrap();
        let request = &job.request;
        assert!(matches!(request.task, Task::Cover { noise_strength, .. } if noise_strength == 0.25));
        assert_eq!((request.steps, request.shift, request.cfg_scale), (12, 2.5, 4.0));
        assert_eq!(request.language, "ja");
        assert_eq!(request.references.len(), 1);
        assert_eq!(request.references[0].channels, reference.channels);
    }

    #[test]
    fn variant_defaults_decide_steps_shift_and_guidance_and_turbo_never_guides() {
        let params = RetakeParams::default();
        let on = JobSettings::from_params(&params, Variant::XlBase);
        assert_eq!((on.steps, on.shift, on.cfg_scale), (50, 3.0, 4.0));
        let on = JobSettings::from_params(&params, Variant::TurboShift1);
        assert_eq!((on.steps, on.shift, on.cfg_scale), (8, 1.0, 1.0));
        assert_eq!(on.language, "unknown");

        // Variant defaults off: the parameters apply (set through their normalized values, as a host does).
        let set = |ptr: ParamPtr, plain: f32| {
            // SAFETY: `ptr` points into `params`, which outlives this call.
            unsafe { ptr._internal_set_normalized_value(ptr.preview_normalized(plain)) };
        };
        set(params.variant_defaults.as_ptr(), 0.0);
        for (ptr, plain) in
            [(params.guidance.as_ptr(), 6.5), (params.steps.as_ptr(), 12.0), (params.shift.as_ptr(), 2.0)]
        {
            set(ptr, plain);
        }
        let guided = JobSettings::from_params(&params, Variant::Sft);
        assert_eq!((guided.steps, guided.shift, guided.cfg_scale), (12, 2.0, 6.5));
        let turbo = JobSettings::from_params(&params, Variant::XlTurbo);
        assert_eq!((turbo.steps, turbo.shift, turbo.cfg_scale), (12, 2.0, 1.0), "a turbo variant runs unguided");
    }
}
