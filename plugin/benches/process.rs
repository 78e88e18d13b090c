//! The audio thread's cost per block (issue "Benchmarks": worst-case and median `process()` time as a fraction
//! of the block period, target ≤ 1 % at 48 kHz / 64 frames).
//!
//! Each block goes through exactly what the plugin's `process()` runs — the host transport converted with
//! `TransportSnapshot::from_host`, the parameters read with `BlockControls::from_params`, then
//! `Realtime::process` — at 48 kHz stereo, 64 and 512 frames per block, paced at real time like a host's audio
//! callback. Three scenarios: capturing a linear playback, playing a take through its edge crossfades on a loop,
//! and looping a region while the job worker and the engine run repaint jobs back to back on a real model (the
//! tiny fixture model unless `RETAKE_MODEL_DIR` names another folder, relative to the workspace root).
//!
//! `cargo bench -p retake --bench process [-- --blocks N]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{unbounded, Sender};
use nih_plug::prelude::Transport;

use retake::capture::CaptureStore;
use retake::params::{RetakeParams, DEFAULT_CAPTURE_MINUTES};
use retake::playback::{take_channel, PlayableTake, TakeSender};
use retake::realtime::{BlockControls, Realtime};
use retake::settings::env_settings;
use retake::shared::{JobPhase, Shared};
use retake::transport::TransportSnapshot;
use retake::worker::{Command, Worker};
use retake_engine::runtime::EngineConfig;

const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
const BLOCK_SIZES: [usize; 2] = [64, 512];
const DEFAULT_BLOCKS: usize = 20_000;
/// The target: the worst block at 64 frames takes at most this fraction of the block period.
const TARGET_FRACTION: f64 = 0.01;

/// What the host does around the plugin in one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Playback from 0 onwards, no take: every block is captured into fresh memory.
    Capture,
    /// A loop across a take's region, so blocks pass its start and end crossfades.
    TakeCrossfades,
    /// A loop over the region while the engine runs repaint jobs of that region back to back.
    EngineJob,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Capture, Scenario::TakeCrossfades, Scenario::EngineJob];

    fn name(self) -> &'static str {
        match self {
            Self::Capture => "capturing",
            Self::TakeCrossfades => "playing a take (50 ms crossfades)",
            Self::EngineJob => "capturing + engine job running",
        }
    }
}

/// Host timeline frame of `seconds`.
fn frames(seconds: f64) -> i64 {
    (seconds * f64::from(RATE)).round() as i64
}

/// The host's side of one activation: the plugin state, the transport and the audio buffers.
struct Host {
    shared: Arc<Shared>,
    realtime: Realtime,
    capture: Arc<CaptureStore>,
    transport: Transport,
    block: usize,
    position: i64,
    /// Loop `[start, end)`; playback is linear without one.
    looped: Option<(i64, i64)>,
    /// One second of stereo input, played cyclically.
    input: Vec<Vec<f32>>,
    buffers: [Vec<f32>; CHANNELS],
}

impl Host {
    /// Activates a fresh plugin state for `block`-frame blocks, as `activate()` does; returns the host and the
    /// sending end of the plugin's take hand-off.
    fn activate(block: usize) -> (Self, TakeSender) {
        let shared = Arc::new(Shared::new(Arc::new(RetakeParams::default())));
        let (sender, player) = take_channel();
        let mut realtime = Realtime::new(shared.clone(), player);
        let capture = Arc::new(CaptureStore::new(CHANNELS, RATE, f64::from(DEFAULT_CAPTURE_MINUTES) * 60.0));
        *shared.capture.write() = Some(capture.clone());
        realtime.prepare(capture.clone(), RATE, CHANNELS, block);
        let mut transport = Transport::new(RATE as f32);
        transport.playing = true;
        transport.tempo = Some(120.0);
        transport.time_sig_numerator = Some(4);
        transport.time_sig_denominator = Some(4);
        let host = Self {
            shared,
            realtime,
            capture,
            transport,
            block,
            position: 0,
            looped: None,
            input: test_signal(),
            buffers: std::array::from_fn(|_| vec![0.0; block]),
        };
        (host, sender)
    }

    /// Sets a host loop `[start_s, end_s)` (reported to the plugin) and moves the playhead to its start.
    fn loop_over(&mut self, start_s: f64, end_s: f64) {
        let range = (frames(start_s), frames(end_s));
        self.looped = Some(range);
        self.transport.loop_range_samples = Some(range);
        self.position = range.0;
    }

    /// Processes one block at the playhead and returns the time `process()` took, then advances the playhead.
    fn block(&mut self) -> Duration {
        let cycle = self.input[0].len();
        for (buffer, input) in self.buffers.iter_mut().zip(&self.input) {
            for (i, sample) in buffer.iter_mut().enumerate() {
                *sample = input[(self.position as usize + i) % cycle];
            }
        }
        self.transport.pos_samples = Some(self.position);
        let [left, right] = &mut self.buffers;
        let mut audio: [&mut [f32]; CHANNELS] = [left, right];
        let params = &self.shared.params;
        let start = Instant::now();
        let snapshot = TransportSnapshot::from_host(&self.transport);
        self.realtime.process(&mut audio, &snapshot, BlockControls::from_params(params));
        let elapsed = start.elapsed();
        self.position += self.block as i64;
        if let Some((start, end)) = self.looped.filter(|&(_, end)| self.position >= end) {
            self.position = start + (self.position - end);
        }
        elapsed
    }

    /// The block period.
    fn period(&self) -> Duration {
        Duration::from_secs_f64(self.block as f64 / f64::from(RATE))
    }
}

/// One second of stereo low-passed noise from a fixed-seed generator (deterministic input for every run).
fn test_signal() -> Vec<Vec<f32>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    (0..CHANNELS)
        .map(|_| {
            let mut low = 0.0f32;
            (0..RATE as usize)
                .map(|_| {
                    low = 0.95 * low + 0.05 * next();
                    0.3 * low + 0.05 * next()
                })
                .collect()
        })
        .collect()
}

/// Sleeps until the next block is due, like a host's audio callback; a late block starts the next one now.
struct Pacer {
    period: Duration,
    next: Instant,
}

impl Pacer {
    fn new(period: Duration) -> Self {
        Self { period, next: Instant::now() }
    }

    fn wait(&mut self) {
        self.next += self.period;
        let now = Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
        } else {
            self.next = now;
        }
    }
}

/// Per-block `process()` times of one scenario at one block size.
struct Timings {
    scenario: Scenario,
    block: usize,
    nanos: Vec<u64>,
    note: String,
}

impl Timings {
    /// The value at `quantile` (0..=1) of the sorted times, nearest rank.
    fn quantile_us(sorted: &[u64], quantile: f64) -> f64 {
        let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1e3
    }

    fn period_us(&self) -> f64 {
        self.block as f64 / f64::from(RATE) * 1e6
    }

    /// `(p50, p99, max)` in microseconds.
    fn summary(&self) -> (f64, f64, f64) {
        let mut sorted = self.nanos.clone();
        sorted.sort_unstable();
        (Self::quantile_us(&sorted, 0.5), Self::quantile_us(&sorted, 0.99), Self::quantile_us(&sorted, 1.0))
    }
}

/// Capturing a linear playback from 0.
fn run_capture(block: usize, blocks: usize) -> Timings {
    let (mut host, _takes) = Host::activate(block);
    let nanos = timed_blocks(&mut host, blocks);
    let captured_s = host.capture.extent().map_or(0.0, |extent| (extent.end - extent.start) as f64 / f64::from(RATE));
    let note = format!("{captured_s:.0} s captured, pool {:.0}% used", host.capture.used_fraction() * 100.0);
    Timings { scenario: Scenario::Capture, block, nanos, note }
}

/// Looping 1.5–6.5 s across a take of 2–6 s, with the default 50 ms edge crossfade.
fn run_take(block: usize, blocks: usize) -> Timings {
    let (mut host, takes) = Host::activate(block);
    let (start, end) = (frames(2.0), frames(6.0));
    let signal = test_signal();
    let channels =
        signal.iter().map(|channel| (start..end).map(|t| -channel[t as usize % channel.len()]).collect()).collect();
    takes.send(Some(Arc::new(PlayableTake { id: 1, sample_rate: RATE, start, channels })));
    host.loop_over(1.5, 6.5);
    let nanos = timed_blocks(&mut host, blocks);
    let fade_ms = host.shared.params.xfade_ms.value();
    Timings { scenario: Scenario::TakeCrossfades, block, nanos, note: format!("edge crossfade {fade_ms:.0} ms") }
}

/// Looping 2–6 s (the region, via `follow_loop`) while the job worker runs repaint jobs back to back on the
/// engine; only blocks processed while a job was running are kept.
fn run_engine_job(block: usize, blocks: usize, engine: &EngineConfig) -> Result<Timings, String> {
    let (commands, receiver) = unbounded();
    let (mut host, takes) = Host::activate(block);
    let root = std::env::temp_dir().join(format!("retake-process-bench-{}", std::process::id()));
    let worker = Worker::new(host.shared.clone(), receiver, takes, Ok(root.clone()), Ok(engine.clone()))
        .spawn()
        .map_err(|err| format!("the job worker could not start: {err}"))?;
    let _ = commands.send(Command::Activated { sample_rate: RATE, channels: CHANNELS });
    // Play from 0 past the region once so it is captured before the first job.
    while host.position < frames(6.0) {
        host.block();
    }
    // Set the loop, and let one block report it to the plugin before the first Generate.
    host.loop_over(2.0, 6.0);
    host.block();
    let result = jobs_back_to_back(&mut host, blocks, &commands);
    let _ = commands.send(Command::Shutdown);
    let _ = worker.join();
    let _ = std::fs::remove_dir_all(&root);
    let (nanos, jobs) = result?;
    let note = format!("{jobs} jobs finished, {} of the blocks ran during a job", nanos.len());
    Ok(Timings { scenario: Scenario::EngineJob, block, nanos, note })
}

/// Runs blocks until `blocks` of them were processed while a job was running, starting the next job (as the
/// editor's Generate button does) as soon as the worker is idle. Returns those blocks' times and the number of
/// jobs that finished.
fn jobs_back_to_back(host: &mut Host, blocks: usize, commands: &Sender<Command>) -> Result<(Vec<u64>, u64), String> {
    let mut nanos = Vec::with_capacity(blocks);
    let mut pacer = Pacer::new(host.period());
    let mut requested = false;
    let mut finished = 0;
    while nanos.len() < blocks {
        // Untimed: what the editor would see between two blocks.
        let running = {
            let board = host.shared.board.lock();
            if let Some(error) = &board.error {
                return Err(format!("the job failed: {error}"));
            }
            board.job != JobPhase::Idle
        };
        let takes = host.shared.params.takes.read().next_id;
        if running || takes != finished {
            requested = false;
            finished = takes;
        }
        if !running && !requested {
            let _ = commands.send(Command::Generate);
            requested = true;
        }
        let elapsed = host.block();
        if running {
            nanos.push(elapsed.as_nanos() as u64);
        }
        pacer.wait();
    }
    Ok((nanos, finished))
}

/// Processes `blocks` blocks paced at real time.
fn timed_blocks(host: &mut Host, blocks: usize) -> Vec<u64> {
    let mut pacer = Pacer::new(host.period());
    (0..blocks)
        .map(|_| {
            let elapsed = host.block().as_nanos() as u64;
            pacer.wait();
            elapsed
        })
        .collect()
}

/// The engine of the job scenario: the plugin's environment settings (`RETAKE_DEVICE`, `RETAKE_VRAM_BUDGET`),
/// with the model from `RETAKE_MODEL_DIR` (a relative path is taken from the workspace root) or else the tiny
/// fixture model — never the settings file, never a download.
fn bench_engine() -> Result<EngineConfig, String> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut settings = env_settings();
    let model = match settings.model_dir.as_str() {
        "" => workspace.join("tests/fixtures/tiny-acestep"),
        dir => workspace.join(dir),
    };
    settings.model_dir = model.to_string_lossy().into_owned();
    settings.engine_config().map_err(|err| err.to_string())
}

/// Blocks per scenario and block size: `--blocks N` (cargo's own `--bench` flag is accepted and ignored).
fn blocks_arg() -> Result<usize, String> {
    let mut args = std::env::args().skip(1);
    let mut blocks = DEFAULT_BLOCKS;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--blocks" => {
                blocks = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--blocks needs a positive whole number")?;
            }
            other => return Err(format!("unknown argument `{other}`; the only option is --blocks N")),
        }
    }
    Ok(blocks)
}

fn print_table(results: &[Timings]) {
    println!(
        "{:<36} {:>6} {:>7} {:>9} {:>9} {:>9} {:>10}  notes",
        "scenario (48 kHz stereo)", "block", "blocks", "p50 µs", "p99 µs", "max µs", "max/period"
    );
    for timings in results {
        let (p50, p99, max) = timings.summary();
        println!(
            "{:<36} {:>6} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.3}%  {}",
            timings.scenario.name(),
            timings.block,
            timings.nanos.len(),
            p50,
            p99,
            max,
            max / timings.period_us() * 100.0,
            timings.note
        );
    }
    let worst_64 = results.iter().filter(|t| t.block == 64).map(|t| t.summary().2 / t.period_us()).fold(0.0, f64::max);
    let verdict = if worst_64 <= TARGET_FRACTION { "met" } else { "NOT met" };
    println!(
        "target: worst block ≤ {:.0}% of the period at 64 frames ({:.2} µs): worst {:.3}% — {verdict}",
        TARGET_FRACTION * 100.0,
        TARGET_FRACTION * 64.0 / f64::from(RATE) * 1e6,
        worst_64 * 100.0
    );
}

fn main() -> std::process::ExitCode {
    let blocks = match blocks_arg() {
        Ok(blocks) => blocks,
        Err(err) => {
            eprintln!("{err}");
            return std::process::ExitCode::from(2);
        }
    };
    let engine = match bench_engine() {
        Ok(engine) => engine,
        Err(err) => {
            eprintln!("{err}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    for scenario in Scenario::ALL {
        for block in BLOCK_SIZES {
            eprintln!("{} at {block} frames: {blocks} blocks, about {:.0} s …", scenario.name(), {
                blocks as f64 * block as f64 / f64::from(RATE)
            });
            let timings = match scenario {
                Scenario::Capture => run_capture(block, blocks),
                Scenario::TakeCrossfades => run_take(block, blocks),
                Scenario::EngineJob => match run_engine_job(block, blocks, &engine) {
                    Ok(timings) => timings,
                    Err(err) => {
                        eprintln!("{err}");
                        return std::process::ExitCode::FAILURE;
                    }
                },
            };
            results.push(timings);
        }
    }
    print_table(&results);
    std::process::ExitCode::SUCCESS
}
