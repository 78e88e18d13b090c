//! The activation headroom booked for each stage (docs/acestep-model.md §12 memory), measured: every stage runs with
//! its weights already loaded under a counting global allocator, and the most heap bytes it holds at once beyond those
//! live before it must stay within `activation_bytes`. On the CPU a tensor's storage is a heap `Vec`, so the count is
//! exact; it covers every thread (rayon and gemm workers included).
//!
//! `RETAKE_HEADROOM_DEVICE=cuda:N` runs the real-geometry stages on that GPU instead, in bf16 as the runtime
//! does there, measured by the driver's count of the device memory pool candle allocates from
//! (`retake_engine::kernels::cuda::device_memory`); a CUDA build is needed (`scripts/gpu-check.sh` runs it).
//!
//! The shapes are ones whose tensors are many KiB: on a model as narrow as the fixture at a frame or two and a
//! token or two, ~10 KiB of per-op CPU scratch (gemm packing) and tensor records outweigh the activations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use retake_engine::kernels::cuda::device_memory;
use retake_engine::model::audio_tokenizer::{AudioDetokenizer, AudioTokenizer};
use retake_engine::model::checkpoint::Checkpoint;
use retake_engine::model::condition::ConditionEncoder;
use retake_engine::model::dit::Dit;
use retake_engine::model::scheduler::Schedule;
use retake_engine::model::silence::SilenceLatent;
use retake_engine::model::text_encoder::TextEncoder;
use retake_engine::model::vae::{Tiling, VaeDecoder, VaeEncoder};
use retake_engine::pipeline::guidance::Guidance;
use retake_engine::pipeline::masks::{chunk_mask, context_latents, fill_with_silence};
use retake_engine::pipeline::{denoise, DenoisePlan, DitCondition, EncodedPrompt, Injection, Phase};
use retake_engine::residency::{activation_bytes, human_bytes, PromptShape, Stage};
use retake_engine::runtime::DeviceChoice;
use retake_engine::Result;

/// `System`, counting the bytes it holds for all threads and the most it has held since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[global_allocator]
static ALLOCATOR: Counting = Counting;

impl Counting {
    fn grew(bytes: usize) {
        let live = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
        PEAK.fetch_max(live, Ordering::SeqCst);
    }

    fn shrank(bytes: usize) {
        LIVE.fetch_sub(bytes, Ordering::SeqCst);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            match new_size.checked_sub(layout.size()) {
                Some(grown) => Self::grew(grown),
                None => Self::shrank(layout.size() - new_size),
            }
        }
        moved
    }
}

/// The counters are process-wide: one measuring test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Most runs a stage may take to leave the heap as it found it.
const RUNS: usize = 3;

/// Where a stage's bytes are counted: the heap on the CPU (the counting allocator), the device's memory pool on a
/// GPU (`retake_engine::kernels::cuda::device_memory`).
struct Meter<'a>(&'a Device);

impl Meter<'_> {
    /// Bytes held now.
    fn in_use(&self) -> u64 {
        if self.0.is_cpu() {
            return LIVE.load(Ordering::SeqCst) as u64;
        }
        device_memory::in_use(self.0).expect("the device reports no memory-pool use")
    }

    /// Starts a new peak at the bytes held now.
    fn reset_peak(&self) {
        if self.0.is_cpu() {
            PEAK.store(LIVE.load(Ordering::SeqCst), Ordering::SeqCst);
        } else {
            assert!(device_memory::reset_peak(self.0), "the device's memory-pool peak cannot be reset");
        }
    }

    /// The most bytes held since the last reset.
    fn peak(&self) -> u64 {
        if self.0.is_cpu() {
            return PEAK.load(Ordering::SeqCst) as u64;
        }
        device_memory::peak(self.0).expect("the device reports no memory-pool peak")
    }
}

/// The most bytes a run of `stage` holds at once beyond those held before it, its result included. A run that
/// leaves bytes behind once its result is dropped has created process-wide scratch — rayon's pool, gemm's
/// per-thread L2 slab (4 MiB a thread here) — which sits in its peak but is no activation of the stage, so the
/// stage runs again until a run leaves memory exactly as it found it.
fn measured<T>(device: &Device, mut stage: impl FnMut() -> Result<T>) -> u64 {
    let meter = Meter(device);
    for _ in 0..RUNS {
        let before = meter.in_use();
        meter.reset_peak();
        drop(stage().unwrap());
        if meter.in_use() == before {
            return meter.peak() - before;
        }
    }
    panic!("each of {RUNS} runs of a stage left bytes allocated after it: it keeps growing process-wide state");
}

/// The device of the real-geometry run, in the dtype the engine runs there: `RETAKE_HEADROOM_DEVICE` (`cpu`,
/// `cuda:N`), by default the CPU.
fn target() -> (Device, DType) {
    let spec = std::env::var("RETAKE_HEADROOM_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice: DeviceChoice = spec.parse().unwrap_or_else(|e| panic!("RETAKE_HEADROOM_DEVICE: {e}"));
    (choice.open().unwrap_or_else(|e| panic!("cannot open {spec}: {e}")), choice.dtype())
}

/// A stage's measured peak against its booked headroom.
struct Row {
    label: String,
    measured: u64,
    estimate: u64,
}

impl Row {
    fn new(ckpt: &Checkpoint, stage: Stage, variant: &str, measured: u64) -> Self {
        Self { label: format!("{stage:?}{variant}"), measured, estimate: activation_bytes(ckpt, stage) }
    }

    fn ratio(&self) -> f64 {
        self.measured as f64 / self.estimate as f64
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!("{title}\n{:<90} {:>11} {:>11} {:>6}", "stage", "measured", "estimate", "ratio");
    for row in rows {
        let (measured, estimate) = (human_bytes(row.measured), human_bytes(row.estimate));
        println!("{:<90} {measured:>11} {estimate:>11} {:>6.3}", row.label, row.ratio());
    }
}

fn assert_within_estimates(rows: &[Row]) {
    for row in rows {
        assert!(
            row.measured <= row.estimate,
            "{}: measured {} bytes of activations but the headroom books {}",
            row.label,
            row.measured,
            row.estimate
        );
    }
}

/// The shapes of one job: a cover (two prompts with CFG: hints, then two conditions) and a studio repaint (one
/// condition with injection) of the same clip.
struct Job {
    /// Latent frames of the clip, whose samples are whole hops.
    frames: usize,
    caption_tokens: usize,
    lyric_tokens: usize,
    /// Sampling steps; the cover switches condition half-way.
    steps: usize,
}

impl Job {
    fn prompts(&self) -> PromptShape {
        PromptShape { prompts: 2, caption_tokens: self.caption_tokens, lyric_tokens: self.lyric_tokens }
    }

    /// Packed encoder states: lyrics, one timbre, caption.
    fn encoder_len(&self) -> usize {
        self.lyric_tokens + 1 + self.caption_tokens
    }
}

/// Standard normal values of `shape` in the checkpoint's dtype: the stages' inputs (values do not change the
/// memory a stage uses, only shapes do).
fn normal(ckpt: &Checkpoint, shape: (usize, usize, usize)) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1., shape, ckpt.device())?.to_dtype(ckpt.dtype())?)
}

/// `count` token ids spread over a vocabulary of `vocab`.
fn token_ids(count: usize, vocab: usize) -> Vec<u32> {
    (0..count).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

fn no_progress(_: usize, _: usize) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// The VAE encoding of the job's clip, as the generator runs it (latents back in the model dtype).
fn encode(ckpt: &Checkpoint, encoder: &VaeEncoder, job: &Job) -> Result<Row> {
    let samples = job.frames * ckpt.vae.hop();
    let audio = Tensor::randn(0f32, 0.3, (1, ckpt.vae.audio_channels, samples), ckpt.device())?.clamp(-1f32, 1f32)?;
    let bytes = measured(ckpt.device(), || {
        let moments = encoder.encode_tiled(&audio, Tiling::ENCODE, &mut no_progress)?;
        Ok(moments.transpose(1, 2)?.contiguous()?.to_dtype(ckpt.dtype())?)
    });
    Ok(Row::new(ckpt, Stage::Encode { samples }, "", bytes))
}

/// The cover hints: tokenize the source latents, detokenize the codes.
fn hints(
    ckpt: &Checkpoint,
    units: &(AudioTokenizer, AudioDetokenizer),
    silence: &SilenceLatent,
    job: &Job,
) -> Result<Row> {
    let latents = normal(ckpt, (1, job.frames, ckpt.acestep.audio_acoustic_hidden_dim))?;
    let (tokenizer, detokenizer) = units;
    let bytes = measured(ckpt.device(), || detokenizer.forward(&tokenizer.tokenize(&latents, silence)?.vectors));
    Ok(Row::new(ckpt, Stage::Hints { frames: job.frames }, "", bytes))
}

/// Every prompt's caption through the text encoder and lyrics through its embedding table.
fn text(ckpt: &Checkpoint, encoder: &TextEncoder, job: &Job) -> Result<Row> {
    let shape = job.prompts();
    let vocab = ckpt.qwen3.vocab_size;
    let (caption, lyrics) = (token_ids(job.caption_tokens, vocab), token_ids(job.lyric_tokens, vocab));
    let bytes = measured(ckpt.device(), || {
        (0..shape.prompts).map(|_| Ok((encoder.encode(&caption)?, encoder.embed(&lyrics)?))).collect::<Result<Vec<_>>>()
    });
    Ok(Row::new(ckpt, Stage::Text(shape), "", bytes))
}

/// The default timbre (derived when the condition encoder loads, within this stage), then every prompt's packed
/// states and null condition.
fn condition(ckpt: &Checkpoint, encoder: &ConditionEncoder, silence: &SilenceLatent, job: &Job) -> Result<Row> {
    let (shape, cfg) = (job.prompts(), &ckpt.acestep);
    let caption = normal(ckpt, (1, job.caption_tokens, cfg.text_hidden_dim))?;
    let lyrics = normal(ckpt, (1, job.lyric_tokens, cfg.text_hidden_dim))?;
    let refs = silence.slice(cfg.timbre_fix_frame)?.unsqueeze(0)?;
    let bytes = measured(ckpt.device(), || {
        let timbre = encoder.timbre(&refs)?.copy()?;
        (0..shape.prompts)
            .map(|_| {
                let states = encoder.encode(&caption, &lyrics, &timbre)?;
                Ok((encoder.null_condition(states.dim(1)?)?, states))
            })
            .collect::<Result<Vec<_>>>()
    });
    Ok(Row::new(ckpt, Stage::Condition(shape), "", bytes))
}

/// The sampling stage of the cover and of the repaint: each condition's context projection and K/V caches
/// (with the null condition's for CFG), then the Euler loop.
fn sampling(ckpt: &Checkpoint, dit: &Dit, silence: &SilenceLatent, job: &Job) -> Result<[Row; 2]> {
    let (frames, channels, encoder_len) = (job.frames, ckpt.acestep.audio_acoustic_hidden_dim, job.encoder_len());
    let states = (1, encoder_len, ckpt.acestep.hidden_size);
    let prompt = || -> Result<EncodedPrompt> {
        Ok(EncodedPrompt { states: normal(ckpt, states)?, null_states: Some(normal(ckpt, states)?) })
    };
    let prompts = [prompt()?, prompt()?];
    let (source, noise) = (normal(ckpt, (1, frames, channels))?, normal(ckpt, (1, frames, channels))?);
    let schedule = Schedule::diffsynth(job.steps, 1.0, 3.0)?;
    let sample = |contexts: &[(usize, Tensor)], injection: Option<Injection>| -> Result<Tensor> {
        let phases = contexts
            .iter()
            .zip(&prompts)
            .map(|((from_step, context), prompt)| {
                Ok(Phase { from_step: *from_step, condition: DitCondition::new(dit, context, prompt)? })
            })
            .collect::<Result<Vec<_>>>()?;
        let guidance = Guidance::Cfg { scale: 2.0 };
        let mut plan = DenoisePlan { schedule: schedule.clone(), phases, guidance, keep_outside: None, injection };
        denoise(dit, noise.clone(), &mut plan, &mut |_| ControlFlow::Continue(()))
    };

    let all = vec![1.0; frames];
    let silence_context = context_latents(&silence.slice(frames)?.unsqueeze(0)?, &all)?;
    let cover = [(0, context_latents(&source, &all)?), (job.steps / 2, silence_context)];
    let cover_bytes = measured(ckpt.device(), || sample(&cover, None));

    let mask = chunk_mask(frames, (frames / 4, frames / 2));
    let repaint = [(0, context_latents(&fill_with_silence(&source, &mask, silence)?, &mask)?)];
    let steps = job.steps.div_ceil(2);
    let injection = || Injection { clean: source.clone(), noise: noise.clone(), mask: mask.clone(), steps };
    let repaint_bytes = measured(ckpt.device(), || sample(&repaint, Some(injection())));
    Ok([
        Row::new(ckpt, Stage::Denoise { frames, encoder_len, conditions: 2, cfg: true }, " cover", cover_bytes),
        Row::new(ckpt, Stage::Denoise { frames, encoder_len, conditions: 1, cfg: true }, " repaint", repaint_bytes),
    ])
}

/// The VAE decoding of the job's latents.
fn decode(ckpt: &Checkpoint, decoder: &VaeDecoder, job: &Job) -> Result<Row> {
    let latents = normal(ckpt, (1, ckpt.vae.decoder_input_channels, job.frames))?;
    let bytes = measured(ckpt.device(), || decoder.decode_tiled(&latents, Tiling::DECODE, &mut no_progress));
    Ok(Row::new(ckpt, Stage::Decode { frames: job.frames }, "", bytes))
}

/// Measures every stage of every job, loading each stage's weights once before its measurements and dropping
/// them after. Rows in stage order, jobs in order within a stage.
fn measure_stages(ckpt: &Checkpoint, silence: &SilenceLatent, jobs: &[Job]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let encoder = VaeEncoder::load(&ckpt.vae, &ckpt.vae_weights()?)?;
    rows.extend(jobs.iter().map(|job| encode(ckpt, &encoder, job)).collect::<Result<Vec<_>>>()?);
    drop(encoder);
    let tokenizers = (AudioTokenizer::load(ckpt)?, AudioDetokenizer::load(ckpt)?);
    rows.extend(jobs.iter().map(|job| hints(ckpt, &tokenizers, silence, job)).collect::<Result<Vec<_>>>()?);
    drop(tokenizers);
    let text_encoder = TextEncoder::load(ckpt)?;
    rows.extend(jobs.iter().map(|job| text(ckpt, &text_encoder, job)).collect::<Result<Vec<_>>>()?);
    drop(text_encoder);
    let condition_encoder = ConditionEncoder::load(ckpt)?;
    rows.extend(jobs.iter().map(|job| condition(ckpt, &condition_encoder, silence, job)).collect::<Result<Vec<_>>>()?);
    drop(condition_encoder);
    let dit = Dit::load(ckpt)?;
    for job in jobs {
        rows.extend(sampling(ckpt, &dit, silence, job)?);
    }
    drop(dit);
    let decoder = VaeDecoder::load(&ckpt.vae, &ckpt.vae_weights()?)?;
    rows.extend(jobs.iter().map(|job| decode(ckpt, &decoder, job)).collect::<Result<Vec<_>>>()?);
    Ok(rows)
}

/// Measures every stage of `jobs` on `ckpt`, prints the table under `label` and checks each stage stays within
/// its estimate; returns the rows for further checks. Callers hold [`SERIAL`] from their first allocation on.
fn check_stages(label: &str, ckpt: &Checkpoint, silence: &SilenceLatent, jobs: &[Job]) -> Vec<Row> {
    let rows = measure_stages(ckpt, silence, jobs).unwrap();
    print_table(label, &rows);
    assert_within_estimates(&rows);
    rows
}

#[test]
fn every_stage_of_the_fixture_model_stays_within_its_headroom() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep");
    let ckpt = Checkpoint::open(&root, DType::F32, &Device::Cpu).unwrap();
    let silence = SilenceLatent::load(&ckpt).unwrap();
    // Odd frame counts pad the DiT's patches and the tokenizer's pool windows and prompts span the sliding
    // window; the short clip with long lyrics makes the VAE's halo rows and the K/V caching count.
    let jobs = [
        Job { frames: 13, caption_tokens: 21, lyric_tokens: 37, steps: 4 },
        Job { frames: 4, caption_tokens: 30, lyric_tokens: 100, steps: 2 },
    ];
    check_stages("fixture model, f32", &ckpt, &silence, &jobs);
}

#[test]
fn every_stage_of_the_real_geometry_stays_within_a_headroom_it_fills_by_a_third_or_more() {
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (device, dtype) = target();
    let ckpt = Checkpoint::random_turbo(7, dtype, &device);
    let frames = Tensor::zeros((ckpt.acestep.timbre_fix_frame, ckpt.acestep.audio_acoustic_hidden_dim), dtype, &device);
    let silence = SilenceLatent::from_frames(frames.unwrap()).unwrap();
    // About 2 s (51 frames pad the patches and the pool windows) with a short caption and lyrics, and one frame
    // with one-token prompts (near the smallest shapes the model's minimum budget is booked for); one step holds
    // what every step does.
    let jobs = [
        Job { frames: 51, caption_tokens: 48, lyric_tokens: 96, steps: 1 },
        Job { frames: 1, caption_tokens: 1, lyric_tokens: 1, steps: 1 },
    ];
    let label = format!("real turbo geometry, random weights, {dtype:?} on {:?}", device.location());
    let rows = check_stages(&label, &ckpt, &silence, &jobs);
    // Measured: the loosest stages, condition encoding (≈0.41: the timbre encoder's 750 frames against its f32
    // attention scores), hints (≈0.47) and text (≈0.46–0.50), fill about half their headroom or less; the DiT and
    // the 2 s VAE over 0.95.
    for row in rows.iter().filter(|_| device.is_cpu()) {
        assert!(
            row.ratio() >= 1.0 / 3.0,
            "{}: the headroom books {} for {} measured",
            row.label,
            row.estimate,
            row.measured
        );
    }
}
