//! The front door of the pipelines: validates a [`GenerationRequest`], prepares the task (text2music, cover,
//! repaint) in the requested [`Mode`], runs the sampling loop, decodes and post-processes (docs/acestep-model.md §10,
//! §13).

use std::collections::VecDeque;
use std::ops::ControlFlow;

use candle_core::Tensor;

use super::components::Components;
use super::conditioning::{encode_prompts, DitCondition, EncodedPrompt, PromptParts};
use super::denoise::{denoise, DenoisePlan, Injection, KeepOutside, Phase};
use super::guidance::{CfgInterval, Guidance};
use super::masks::{
    chunk_mask, context_latents, crossfade_weights, fill_with_silence, mix_frames, reference_denoise_mask,
    reference_padding, studio_region_frames, FrameGrid, OutpaintPadding,
};
use super::noise::initial_noise;
use super::output::{splice, to_audio, Level};
use super::request::{GenerationOutput, GenerationRequest, Metas, Mode, Progress, ProgressFn, Task, MAX_DURATION_S};
use super::timbre::{checked_reference, timbre_window};
use crate::audio::{check_finite, content_hash, to_stereo, Audio, MODEL_SAMPLE_RATE};
use crate::error::{EngineError, Result};
use crate::model::audio_tokenizer::parse_audio_codes;
use crate::model::checkpoint::Checkpoint;
use crate::model::prompt::{Instruction, PromptTokenizer};
use crate::model::scheduler::{add_noise, Schedule};
use crate::model::silence::SilenceLatent;
use crate::model::vae::Tiling;
use crate::model::variant::ScheduleKind;
use crate::residency::{ResidencyStats, Stage, Unit};

/// Frames of the official boundary crossfade after a repaint (0.4 s).
const REPAINT_CROSSFADE_FRAMES: usize = 10;
/// Source latents kept for iterative edits of the same audio.
const SOURCE_CACHE_ENTRIES: usize = 4;

/// Runs generation requests on one checkpoint, keeping components loaded (within the VRAM budget, if any) and
/// recent source latents cached.
pub struct Generator {
    components: Components,
    source_cache: VecDeque<(u64, Tensor)>,
    vae_encodes: usize,
}

/// A task prepared for sampling; its DiT conditions are built once the DiT is resident.
struct Prepared {
    schedule: Schedule,
    conditions: Vec<ConditionSpec>,
    keep_outside: Option<KeepOutside>,
    injection: Option<Injection>,
    start: Tensor,
    /// Studio repaint: per-frame weights of the generated latents against the clean source after sampling.
    final_blend: Option<(Tensor, Vec<f32>)>,
    source_latents: Option<Tensor>,
    finish: Finish,
}

/// A DiT condition to build in the sampling stage: from which step it applies, its context latents `[1, T, 2C]`
/// and its encoded prompt.
struct ConditionSpec {
    from_step: usize,
    context: Tensor,
    prompt: EncodedPrompt,
}

/// How the decoded audio becomes the result.
struct Finish {
    level: Level,
    /// Keep only the first `n` samples.
    crop: Option<usize>,
    /// Studio repaint with splicing.
    splice: Option<Splice>,
}

/// The original samples to put back around the repainted regions of a studio repaint (here and in the remote
/// backend, engine/src/remote/job.rs, which places a server's result the same way).
pub(crate) struct Splice {
    /// The (padded) source.
    source: Audio,
    /// Regions in samples of the padded timeline.
    regions: Vec<(usize, usize)>,
    /// Equal-power crossfade length in samples.
    crossfade: usize,
}

impl Splice {
    /// The splice of a studio repaint: `padded` is the source padded as `padding` says, the regions are
    /// `padding.ranges` in its samples, and the crossfade lasts `crossfade_ms`.
    pub(crate) fn studio(padded: Audio, padding: &OutpaintPadding, crossfade_ms: f64) -> Self {
        let rate = padded.sample_rate as f64;
        let total = padded.len();
        let regions = padding
            .ranges
            .iter()
            .map(|&(s, e)| ((s * rate).max(0.0) as usize, ((e * rate) as usize).min(total)))
            .collect();
        Self { source: padded, regions, crossfade: (crossfade_ms.max(0.0) * rate / 1000.0).round() as usize }
    }

    /// `generated` (as long as the padded source) inside the regions, the original samples bit for bit outside them
    /// and their crossfades.
    pub(crate) fn apply(&self, generated: &Audio) -> Result<Audio> {
        splice(&self.source, generated, &self.regions, self.crossfade)
    }
}

impl Generator {
    /// A generator on `checkpoint`; components load on first use. With a `budget` (bytes of device memory for
    /// weights and activations together) each stage releases what it needs room from and the DiT streams blocks
    /// when it does not fit whole; a budget below the model's minimum ([`crate::residency::minimum_budget`]) is
    /// refused here, before anything loads, with an error that states the minimum.
    pub fn new(checkpoint: Checkpoint, budget: Option<u64>) -> Result<Self> {
        Ok(Self { components: Components::new(checkpoint, budget)?, source_cache: VecDeque::new(), vae_encodes: 0 })
    }

    /// A generator whose prompt tokenizer and silence latent are given rather than read from the model folder:
    /// for random-weight checkpoints (benchmarks), which have neither file. The units are sized from the
    /// geometry, so a `budget` works as in [`Generator::new`] (and is refused the same way when too small).
    pub fn with_assets(
        checkpoint: Checkpoint,
        tokenizer: PromptTokenizer,
        silence: SilenceLatent,
        budget: Option<u64>,
    ) -> Result<Self> {
        Ok(Self {
            components: Components::with_assets(checkpoint, Some(tokenizer), silence, budget)?,
            source_cache: VecDeque::new(),
            vae_encodes: 0,
        })
    }

    /// The residency accounting: budget, resident and peak bytes (peaks since the generator was created).
    pub fn residency(&self) -> ResidencyStats {
        self.components.stats()
    }

    /// The units resident now.
    pub fn resident_units(&self) -> Vec<Unit> {
        self.components.resident_units()
    }

    /// How many times the VAE encoder has run (cached sources skip it).
    pub fn vae_encodes(&self) -> usize {
        self.vae_encodes
    }

    /// Runs one request. `progress` is told about encoding, each step and each decode tile, and may cancel.
    pub fn generate(&mut self, request: &GenerationRequest, progress: &mut ProgressFn) -> Result<GenerationOutput> {
        check_request(request)?;
        self.components.checkpoint().check_guidance(request.cfg_scale)?;
        if let ControlFlow::Break(()) = progress(Progress::Encoding) {
            return Err(EngineError::Cancelled);
        }
        let prepared = match &request.task {
            Task::Text2Music { duration_s } => self.text2music(request, *duration_s, progress)?,
            Task::Cover { cover_strength, noise_strength, audio_codes } => {
                self.cover(request, *cover_strength, *noise_strength, audio_codes.as_deref(), progress)?
            }
            Task::Repaint { ranges, strength, splice_crossfade_ms } => {
                self.repaint(request, ranges, *strength, *splice_crossfade_ms, progress)?
            }
        };
        let Prepared { schedule, conditions, keep_outside, injection, start, final_blend, source_latents, finish: to } =
            prepared;
        let guidance = guidance(request);
        let encoder_len = conditions.iter().map(|c| c.prompt.states.dim(1)).collect::<candle_core::Result<Vec<_>>>()?;
        self.components.enter(Stage::Denoise {
            frames: start.dim(1)?,
            encoder_len: encoder_len.into_iter().max().unwrap_or(0),
            conditions: conditions.len(),
            cfg: guidance.uses_null(),
        })?;
        let mut latents = {
            let dit = self.components.dit()?;
            let phases = conditions
                .iter()
                .map(|c| {
                    Ok(Phase { from_step: c.from_step, condition: DitCondition::new(&dit, &c.context, &c.prompt)? })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut plan = DenoisePlan { schedule, phases, guidance, keep_outside, injection };
            denoise(&dit, start, &mut plan, progress)?
        };
        if let Some((clean, weights)) = &final_blend {
            latents = mix_frames(clean, &latents, weights)?;
        }
        self.components.enter(Stage::Decode { frames: latents.dim(1)? })?;
        let decoded = self.components.vae_decoder()?.decode_tiled(
            &latents.transpose(1, 2)?,
            Tiling::DECODE,
            &mut |tile, tiles| progress(Progress::Decoding { tile, tiles }),
        )?;
        let audio = finish(decoded, &to)?;
        Ok(GenerationOutput { audio, latents, source_latents })
    }

    fn grid(&self) -> FrameGrid {
        FrameGrid::from_vae(&self.components.checkpoint().vae)
    }

    fn latent_channels(&self) -> usize {
        self.components.checkpoint().acestep.audio_acoustic_hidden_dim
    }

    fn noise(&self, request: &GenerationRequest, frames: usize) -> Result<Tensor> {
        let ckpt = self.components.checkpoint();
        initial_noise(request.noise.as_ref(), request.seed, frames, self.latent_channels(), ckpt.dtype(), ckpt.device())
    }

    /// The schedule for `request` starting at `strength` (1 = from pure noise): in studio mode of the checkpoint's
    /// kind (the official turbo table for 8 steps on a turbo variant, entered at the nearest value to `strength`;
    /// model/variant.rs), in reference mode DiffSynth's formula.
    fn schedule(&self, request: &GenerationRequest, strength: f64) -> Result<Schedule> {
        let kind = match request.mode {
            Mode::Studio => self.components.checkpoint().schedule_kind(),
            Mode::Reference => ScheduleKind::Formula,
        };
        kind.schedule(request.steps, strength, request.shift)
    }

    /// The encoded prompts of `instructions` for `request` (with null conditions when CFG is on), with the
    /// request's timbre references or the default timbre.
    fn prompts(
        &mut self,
        request: &GenerationRequest,
        instructions: &[Instruction],
        metas: &Metas,
        progress: &mut ProgressFn,
    ) -> Result<Vec<EncodedPrompt>> {
        let references = self.timbre_references(request, progress)?;
        let parts: Vec<PromptParts> = instructions
            .iter()
            .map(|&instruction| PromptParts {
                instruction,
                caption: &request.caption,
                metas,
                lyrics: &request.lyrics,
                language: &request.language,
            })
            .collect();
        encode_prompts(&mut self.components, &parts, guidance(request).uses_null(), references.as_ref())
    }

    /// VAE latents `[N, timbre_fix_frame, C]` of the request's timbre references, each prepared as
    /// pipeline/timbre.rs describes with an offset seed of the job; `None` without references.
    fn timbre_references(&mut self, request: &GenerationRequest, progress: &mut ProgressFn) -> Result<Option<Tensor>> {
        let window = self.components.checkpoint().acestep.timbre_fix_frame * self.grid().hop;
        let mut latents = Vec::new();
        for (index, reference) in request.references.iter().enumerate() {
            let reference = checked_reference(index, reference)?;
            let clip = timbre_window(&reference, window, request.seed.wrapping_add(index as u64));
            latents.push(self.encode_source(&clip, request.mode, progress)?);
        }
        Ok(if latents.is_empty() { None } else { Some(Tensor::cat(&latents, 0)?) })
    }

    /// The one encoded prompt of `instruction`.
    fn prompt(
        &mut self,
        request: &GenerationRequest,
        instruction: Instruction,
        metas: &Metas,
        progress: &mut ProgressFn,
    ) -> Result<EncodedPrompt> {
        let mut prompts = self.prompts(request, &[instruction], metas, progress)?;
        Ok(prompts.remove(0))
    }

    /// `[1, T, 2C]` context with silence as the source and the chunk mask all ones (text2music, plain cover).
    fn silence_context(&mut self, frames: usize) -> Result<Tensor> {
        let silence = self.components.silence()?.slice(frames)?.unsqueeze(0)?;
        context_latents(&silence, &vec![1.0; frames])
    }

    fn text2music(
        &mut self,
        request: &GenerationRequest,
        duration_s: f64,
        progress: &mut ProgressFn,
    ) -> Result<Prepared> {
        if !(duration_s.is_finite() && duration_s > 0.0) {
            return Err(EngineError::invalid(format!("text2music duration {duration_s} s must be a positive number")));
        }
        check_length("the text2music duration", duration_s)?;
        let grid = self.grid();
        let (frames, crop) = match request.mode {
            Mode::Reference => (round_half_even(duration_s * grid.sample_rate as f64 / grid.hop as f64), None),
            Mode::Studio => {
                let samples = (duration_s * grid.sample_rate as f64).round() as usize;
                (samples.div_ceil(grid.hop), Some(samples))
            }
        };
        if frames == 0 {
            return Err(EngineError::invalid(format!("{duration_s} s is shorter than one latent frame")));
        }
        let metas = prompt_metas(request, Some(duration_s));
        let prompt = self.prompt(request, Instruction::Text2Music, &metas, progress)?;
        let context = self.silence_context(frames)?;
        Ok(Prepared {
            schedule: self.schedule(request, 1.0)?,
            conditions: vec![ConditionSpec { from_step: 0, context, prompt }],
            keep_outside: None,
            injection: None,
            start: self.noise(request, frames)?,
            final_blend: None,
            source_latents: None,
            finish: Finish { level: Level::for_mode(request.mode), crop, splice: None },
        })
    }

    fn cover(
        &mut self,
        request: &GenerationRequest,
        cover_strength: f32,
        noise_strength: f32,
        codes: Option<&str>,
        progress: &mut ProgressFn,
    ) -> Result<Prepared> {
        check_unit("cover strength", cover_strength)?;
        check_unit("cover noise strength", noise_strength)?;
        let (hints, raw, source_samples) = match codes {
            Some(codes) => {
                let frames =
                    parse_audio_codes(codes, u32::MAX).len() * self.components.checkpoint().acestep.pool_window_size;
                let grid = self.grid();
                check_length("the cover from audio codes", (frames * grid.hop) as f64 / grid.sample_rate as f64)?;
                self.components.enter(Stage::Hints { frames })?;
                let tokenizer = self.components.audio_tokenizer()?;
                let hints = self.components.detokenizer()?.from_code_string(tokenizer.fsq(), codes)?;
                (hints.clone(), hints, None)
            }
            None => {
                let source = self.source_audio(request)?;
                let samples = source.len();
                let latents = self.encode_source(&source, request.mode, progress)?;
                let silence = self.components.silence()?;
                self.components.enter(Stage::Hints { frames: latents.dim(1)? })?;
                let quantized = self.components.audio_tokenizer()?.tokenize(&latents, &silence)?;
                let hints = self.components.detokenizer()?.forward(&quantized.vectors)?;
                let frames = latents.dim(1)?;
                match request.mode {
                    // DiffSynth keeps the padded length; its noise-start source is the raw latents plus the
                    // detokenized tail.
                    Mode::Reference => {
                        let tail = hints.narrow(1, frames, hints.dim(1)? - frames)?;
                        (hints, Tensor::cat(&[&latents, &tail], 1)?, Some(samples))
                    }
                    Mode::Studio => (hints.narrow(1, 0, frames)?, latents, Some(samples)),
                }
            }
        };
        let frames = hints.dim(1)?;
        let metas = prompt_metas(request, source_samples.map(|n| n as f64 / MODEL_SAMPLE_RATE as f64));
        let schedule = self.schedule(request, 1.0 - noise_strength as f64)?;
        let switch = (schedule.len() as f64 * cover_strength as f64) as usize;
        let mut phases = Vec::new();
        if switch > 0 {
            phases.push((0, Instruction::Cover, context_latents(&hints, &vec![1.0; frames])?));
        }
        if switch < schedule.len() {
            phases.push((switch, Instruction::Text2Music, self.silence_context(frames)?));
        }
        let instructions: Vec<Instruction> = phases.iter().map(|&(_, instruction, _)| instruction).collect();
        let prompts = self.prompts(request, &instructions, &metas, progress)?;
        let conditions = phases
            .into_iter()
            .zip(prompts)
            .map(|((from_step, _, context), prompt)| ConditionSpec { from_step, context, prompt })
            .collect();
        let noise = self.noise(request, frames)?;
        let start = if noise_strength > 0.0 || request.mode == Mode::Reference {
            add_noise(&raw, &noise, schedule.sigmas()[0])?
        } else {
            noise
        };
        let crop = source_samples.filter(|_| request.mode == Mode::Studio);
        Ok(Prepared {
            schedule,
            conditions,
            keep_outside: None,
            injection: None,
            start,
            final_blend: None,
            source_latents: Some(raw),
            finish: Finish { level: Level::for_mode(request.mode), crop, splice: None },
        })
    }

    fn repaint(
        &mut self,
        request: &GenerationRequest,
        ranges: &[(f64, f64)],
        strength: f32,
        splice_crossfade_ms: Option<f64>,
        progress: &mut ProgressFn,
    ) -> Result<Prepared> {
        check_unit("repaint strength", strength)?;
        let source = self.source_audio(request)?;
        let grid = self.grid();
        let duration = source.duration_s();
        let extent = ranges.iter().fold((0f64, duration), |(lo, hi), &(s, e)| (lo.min(s), hi.max(e)));
        check_length("the repainted clip (source plus outpainting)", extent.1 - extent.0)?;
        let padding = match request.mode {
            Mode::Reference => reference_padding(ranges, source.len(), grid)?,
            Mode::Studio => studio_padding(ranges, source.len(), duration, grid)?,
        };
        if let Some(&(start, end)) = ranges.iter().find(|&&(start, end)| start > duration || end < 0.0) {
            return Err(EngineError::invalid(format!(
                "repaint range {start}..{end} s lies entirely outside the {duration:.2} s clip; a range must overlap \
                 or touch the clip (start it at or before the clip's end to outpaint)"
            )));
        }
        let padded = pad_audio(&source, padding.left, padding.right);
        let clean = self.encode_source(&padded, request.mode, progress)?;
        let frames = clean.dim(1)?;
        let silence = self.components.silence()?;
        let metas = prompt_metas(request, Some(duration));
        let prompt = self.prompt(request, Instruction::Repaint, &metas, progress)?;
        let noise = self.noise(request, frames)?;
        match request.mode {
            Mode::Reference => {
                let mask = reference_denoise_mask(frames, &padding, strength, grid)?;
                let context = context_latents(&fill_with_silence(&clean, &mask, &silence)?, &vec![1.0; frames])?;
                let schedule = self.schedule(request, 1.0)?;
                let start = add_noise(&clean, &noise, schedule.sigmas()[0])?;
                Ok(Prepared {
                    schedule,
                    conditions: vec![ConditionSpec { from_step: 0, context, prompt }],
                    keep_outside: Some(KeepOutside { source: clean.clone(), mask }),
                    injection: None,
                    start,
                    final_blend: None,
                    source_latents: Some(clean),
                    finish: Finish { level: Level::Reference, crop: None, splice: None },
                })
            }
            Mode::Studio => {
                let regions = padding
                    .ranges
                    .iter()
                    .map(|&r| studio_region_frames(r, frames, grid))
                    .collect::<Result<Vec<_>>>()?;
                let mask = union(frames, regions.iter().map(|&r| chunk_mask(frames, r)));
                let blend =
                    union(frames, regions.iter().map(|&r| crossfade_weights(frames, r, REPAINT_CROSSFADE_FRAMES)));
                let context = context_latents(&fill_with_silence(&clean, &mask, &silence)?, &mask)?;
                let schedule = self.schedule(request, strength as f64)?;
                let start =
                    if strength < 1.0 { add_noise(&clean, &noise, schedule.sigmas()[0])? } else { noise.clone() };
                let inject_steps = round_half_even(0.5 * schedule.len() as f64);
                let total = padding.left + source.len() + padding.right;
                let splice = splice_crossfade_ms.map(|ms| Splice::studio(padded.clone(), &padding, ms));
                Ok(Prepared {
                    schedule,
                    conditions: vec![ConditionSpec { from_step: 0, context, prompt }],
                    keep_outside: None,
                    injection: Some(Injection { clean: clean.clone(), noise, mask, steps: inject_steps }),
                    start,
                    final_blend: Some((clean.clone(), blend)),
                    source_latents: Some(clean),
                    finish: Finish { level: Level::AntiClip, crop: Some(total), splice },
                })
            }
        }
    }

    /// The request's source as 48 kHz stereo, checked.
    fn source_audio(&self, request: &GenerationRequest) -> Result<Audio> {
        checked_source(request, self.grid().hop)
    }

    /// VAE latents `[1, T, C]` of 48 kHz stereo audio (clamped to ±1), from the cache when this exact audio
    /// was encoded recently. Studio mode pads the audio to whole frames so decoding covers every sample.
    fn encode_source(&mut self, audio: &Audio, mode: Mode, progress: &mut ProgressFn) -> Result<Tensor> {
        let audio = match mode {
            Mode::Reference => audio.clone(),
            Mode::Studio => pad_audio(audio, 0, audio.len().next_multiple_of(self.grid().hop) - audio.len()),
        };
        let key = content_hash(&audio);
        if let Some((_, latents)) = self.source_cache.iter().find(|(k, _)| *k == key) {
            return Ok(latents.clone());
        }
        let (device, dtype) = (self.components.checkpoint().device().clone(), self.components.checkpoint().dtype());
        let samples: Vec<f32> = audio.channels.iter().flatten().map(|s| s.clamp(-1.0, 1.0)).collect();
        let wave = Tensor::from_vec(samples, (1, audio.channels.len(), audio.len()), &device)?;
        self.components.enter(Stage::Encode { samples: audio.len() })?;
        let latents = self
            .components
            .vae_encoder()?
            .encode_tiled(&wave, Tiling::ENCODE, &mut |_, _| progress(Progress::Encoding))?
            .transpose(1, 2)?
            .contiguous()?
            .to_dtype(dtype)?;
        self.vae_encodes += 1;
        if self.source_cache.len() == SOURCE_CACHE_ENTRIES {
            self.source_cache.pop_front();
        }
        self.source_cache.push_back((key, latents.clone()));
        Ok(latents)
    }
}

/// Checks the request-wide numbers.
fn check_request(request: &GenerationRequest) -> Result<()> {
    request.check_limits()?;
    if request.steps == 0 {
        return Err(EngineError::invalid("steps must be at least 1 (turbo uses 8)"));
    }
    if !(request.shift.is_finite() && request.shift > 0.0) {
        return Err(EngineError::invalid(format!("shift {} must be a positive number (turbo uses 3)", request.shift)));
    }
    if !(request.cfg_scale.is_finite() && request.cfg_scale >= 0.0) {
        return Err(EngineError::invalid(format!("cfg scale {} must be a non-negative number", request.cfg_scale)));
    }
    let CfgInterval { start, end } = request.cfg_interval;
    if !(start.is_finite() && end.is_finite() && (0.0..=1.0).contains(&start) && (0.0..=1.0).contains(&end))
        || start > end
    {
        return Err(EngineError::invalid(format!(
            "cfg interval {start}..{end} must lie within 0..1 with start ≤ end (1 = the noisy start of the schedule)"
        )));
    }
    Ok(())
}

/// The guidance `request` asks for (pipeline/guidance.rs).
fn guidance(request: &GenerationRequest) -> Guidance {
    Guidance::new(request.mode, request.cfg_scale, request.cfg_interval)
}

/// Refuses lengths beyond [`MAX_DURATION_S`] before anything is allocated for them.
fn check_length(what: &str, seconds: f64) -> Result<()> {
    if seconds <= MAX_DURATION_S {
        Ok(())
    } else {
        Err(EngineError::invalid(format!(
            "{what} would be {seconds:.1} s long; Retake handles at most {MAX_DURATION_S} s per job — pick a shorter region"
        )))
    }
}

fn check_unit(what: &str, value: f32) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(EngineError::invalid(format!("{what} {value} is outside 0..1")))
    }
}

/// The metas written into the prompt: reference mode fills gaps with DiffSynth's call defaults, studio mode
/// leaves them `N/A` and takes the duration from the source (or the requested length).
fn prompt_metas(request: &GenerationRequest, duration_s: Option<f64>) -> Metas {
    let metas = &request.metas;
    match request.mode {
        Mode::Reference => Metas {
            bpm: metas.bpm.or(Some(100.0)),
            time_signature: metas.time_signature.clone().or(Some("4".into())),
            key: metas.key.clone().or(Some("B minor".into())),
            duration_s: metas.duration_s.or(Some(60.0)),
        },
        Mode::Studio => Metas { duration_s: duration_s.or(metas.duration_s), ..metas.clone() },
    }
}

/// Official outpaint padding generalised to several ranges: zeros before the earliest start below 0 s and
/// after the latest end beyond the clip; ranges shifted onto the padded timeline.
pub(crate) fn studio_padding(
    ranges: &[(f64, f64)],
    samples: usize,
    duration: f64,
    grid: FrameGrid,
) -> Result<OutpaintPadding> {
    let mut padding = reference_padding(ranges, samples, grid)?;
    let max_end = ranges.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
    padding.right = ((max_end - duration).max(0.0) * grid.sample_rate as f64) as usize;
    Ok(padding)
}

/// Element-wise maximum of per-frame weight vectors.
fn union(frames: usize, parts: impl Iterator<Item = Vec<f32>>) -> Vec<f32> {
    parts.fold(vec![0.0; frames], |acc, part| acc.iter().zip(part).map(|(a, b)| a.max(b)).collect())
}

/// `request`'s source as 48 kHz stereo: present, at the model's rate, finite, within the length limit and at least
/// one latent frame (`hop` samples) long. The local pipeline and the remote backend (remote/job.rs) both take it.
pub(crate) fn checked_source(request: &GenerationRequest, hop: usize) -> Result<Audio> {
    let source = request
        .source
        .clone()
        .ok_or_else(|| EngineError::invalid("this task needs source audio; capture or load a clip first"))?;
    if source.sample_rate != MODEL_SAMPLE_RATE {
        return Err(EngineError::invalid(format!(
            "the source is {} Hz but the engine runs at {MODEL_SAMPLE_RATE} Hz; resample it first \
             (retake_engine::audio::resample)",
            source.sample_rate
        )));
    }
    let source = to_stereo(source)?;
    check_finite(&source, "the source audio")?;
    check_length("the source audio", source.duration_s())?;
    if source.len() < hop {
        return Err(EngineError::invalid(format!(
            "the source is {} samples long; it needs at least one latent frame ({hop} samples)",
            source.len()
        )));
    }
    Ok(source)
}
/// `left` zeros, the audio, `right` zeros, per channel.
pub(crate) fn pad_audio(audio: &Audio, left: usize, right: usize) -> Audio {
    let channels = audio
        .channels
        .iter()
        .map(|c| {
            std::iter::repeat_n(0.0, left).chain(c.iter().copied()).chain(std::iter::repeat_n(0.0, right)).collect()
        })
        .collect();
    Audio::new(audio.sample_rate, channels)
}

/// Python's `round()` on a non-negative float: halves go to the even neighbour.
fn round_half_even(x: f64) -> usize {
    let floor = x.floor();
    let diff = x - floor;
    let n = if diff > 0.5 || (diff == 0.5 && floor % 2.0 != 0.0) { floor + 1.0 } else { floor };
    n.max(0.0) as usize
}

/// Decoded `[1, 2, N]` → the result audio: level, crop, splice.
fn finish(decoded: Tensor, finish: &Finish) -> Result<Audio> {
    let mut audio = to_audio(&decoded, finish.level)?;
    if let Some(n) = finish.crop {
        audio.channels.iter_mut().for_each(|c| c.resize(n, 0.0));
    }
    if let Some(s) = &finish.splice {
        audio = s.apply(&audio)?;
    }
    Ok(audio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rounding_sends_halves_to_even() {
        assert_eq!(round_half_even(62.5), 62);
        assert_eq!(round_half_even(63.5), 64);
        assert_eq!(round_half_even(50.0), 50);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(0.5 * 5.0), 2);
    }
}
