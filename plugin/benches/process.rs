//! The audio thread's cost per block (issue "Benchmarks": worst-case and median `process()` time as a fraction
//! of the block period, target ≤ 1 % at 48 kHz / 64 frames).
//!
//! Each block goes through exactly what the plugin's `process()` runs — the host transport converted with
//! `TransportSnapshot::from_host`, the parameters read with `BlockControls::from_params`, then
//! `Realtime::process` — at 48 kHz stereo, 64 and 512 frames per block, paced at real time like a host's audio
//! callback, with the plugin's job worker running beside it as it does from `activate()` on. Three scenarios:
//! capturing a linear playback; looping across a take made by a real job, so blocks pass its edge crossfades;
//! and looping the region while the worker and the engine run repaint jobs back to back. Jobs run on the tiny
//! fixture model unless `RETAKE_MODEL_DIR` names another folder (relative to the workspace root).
//!
//! `cargo bench -p retake --bench process [-- --blocks N]`

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{unbounded, Sender};
use nih_plug::prelude::Transport;

use retake::capture::CaptureStore;
use retake::params::{RetakeParams, DEFAULT_CAPTURE_MINUTES};
use retake::playback::take_channel;
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
/// The job region (the host loop while generating), in seconds.
const REGION_S: (f64, f64) = (2.0, 6.0);
/// The busy-wait of the jitter probe (about a 64-frame block's median).
const JITTER_PROBE: Duration = Duration::from_micros(2);
/// Longest wait for a job whose take the next scenario plays.
const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// What the host does around the plugin in one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// Playback from 0 onwards, no take: every block is captured into memory not used before.
    Capture,
    /// A loop half a second wider than a take's region on each side, so blocks pass its edge crossfades.
    TakeCrossfades,
    /// A loop over the region while the engine runs repaint jobs of it back to back.
    EngineJob,
    /// No plugin: a fixed busy-wait timed the same way, showing the machine's own jitter.
    JitterProbe,
}

impl Scenario {
    const ALL: [Scenario; 4] =
        [Scenario::Capture, Scenario::TakeCrossfades, Scenario::EngineJob, Scenario::JitterProbe];

    fn name(self) -> &'static str {
        match self {
            Self::Capture => "capturing",
            Self::TakeCrossfades => "playing a take (50 ms crossfades)",
            Self::EngineJob => "capturing + engine job running",
            Self::JitterProbe => "(reference: machine jitter)",
        }
    }
}

/// A scenario's kept block times in nanoseconds and a note about the run, or why it could not run.
type Outcome = Result<(Vec<u64>, String), String>;

/// Host timeline frame of `seconds`.
fn frames(seconds: f64) -> i64 {
    (seconds * f64::from(RATE)).round() as i64
}

/// The host's side of one activation: the plugin state and its job worker, the transport and the audio buffers.
struct Host {
    shared: Arc<Shared>,
    realtime: Realtime,
    commands: Sender<Command>,
    worker: Option<JoinHandle<()>>,
    takes_root: PathBuf,
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
    /// Activates a fresh plugin for `block`-frame blocks, as `activate()` does: capture memory, the audio-thread
    /// state and a job worker that starts `engine` on the first job (take files go to a temporary folder).
    fn activate(block: usize, engine: &EngineConfig) -> Result<Self, String> {
        let shared = Arc::new(Shared::new(Arc::new(RetakeParams::default())));
        let (takes, player) = take_channel();
        let mut realtime = Realtime::new(shared.clone(), player);
        let capture = Arc::new(CaptureStore::new(CHANNELS, RATE, f64::from(DEFAULT_CAPTURE_MINUTES) * 60.0));
        *shared.capture.write() = Some(capture.clone());
        realtime.prepare(capture, RATE, CHANNELS, block);
        let (commands, receiver) = unbounded();
        let takes_root = std::env::temp_dir().join(format!("retake-process-bench-{}-{block}", std::process::id()));
        let worker = Worker::new(shared.clone(), receiver, takes, Ok(takes_root.clone()), Ok(engine.clone()))
            .spawn()
            .map_err(|err| format!("the job worker could not start: {err}"))?;
        let _ = commands.send(Command::Activated { sample_rate: RATE, channels: CHANNELS });
        let mut transport = Transport::new(RATE as f32);
        transport.playing = true;
        transport.tempo = Some(120.0);
        transport.time_sig_numerator = Some(4);
        transport.time_sig_denominator = Some(4);
        Ok(Self {
            shared,
            realtime,
            commands,
            worker: Some(worker),
            takes_root,
            transport,
            block,
            position: 0,
            looped: None,
            input: test_signal(),
            buffers: std::array::from_fn(|_| vec![0.0; block]),
        })
    }

    /// Sets a host loop `[start_s, end_s)` (reported to the plugin) and moves the playhead to its start.
    fn loop_over(&mut self, start_s: f64, end_s: f64) {
        let range = (frames(start_s), frames(end_s));
        self.looped = Some(range);
        self.transport.loop_range_samples = Some(range);
        self.position = range.0;
    }

    /// Untimed set-up for a job: plays from 0 past the region so it is captured, then loops over it (one
    /// block, so the plugin has seen the loop that becomes the job's region).
    fn capture_region(&mut self) {
        while self.position < frames(REGION_S.1) {
            self.block();
        }
        self.loop_over(REGION_S.0, REGION_S.1);
        self.block();
    }

    /// The worker's state as the editor sees it: whether a job runs, and how many takes jobs have made.
    fn job_status(&self) -> Result<(bool, u64), String> {
        let board = self.shared.board.lock();
        if let Some(error) = &board.error {
            return Err(format!("the job failed: {error}"));
        }
        Ok((board.job != JobPhase::Idle, self.shared.params.takes.read().next_id))
    }

    /// Starts a job as the editor's Generate button does.
    fn generate(&self) {
        let _ = self.commands.send(Command::Generate);
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

impl Drop for Host {
    /// Stops the worker (and with it the engine) as the plugin's `Drop` does, and removes the take files.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        let _ = std::fs::remove_dir_all(&self.takes_root);
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

/// Minor page faults of the calling thread so far (`/proc/thread-self/stat`, Linux); `None` elsewhere.
fn thread_page_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; `minflt` is the 10th field overall.
    stat.rsplit_once(')')?.1.split_whitespace().nth(7)?.parse().ok()
}

/// Real-time priority of the audio loop (hosts' audio threads run at SCHED_FIFO 70–95).
const AUDIO_PRIORITY: i32 = 70;

/// Switches the calling thread to SCHED_FIFO at [`AUDIO_PRIORITY`] (`on`) or back to normal scheduling, as a
/// host does for its audio thread; false if the system refuses (no permission). Threads it starts meanwhile
/// would inherit the policy, so the loop starts none.
#[cfg(target_os = "linux")]
fn set_realtime(on: bool) -> bool {
    let (policy, priority) = if on { (libc::SCHED_FIFO, AUDIO_PRIORITY) } else { (libc::SCHED_OTHER, 0) };
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: changes only the calling thread's scheduling; `param` is a valid, initialised struct.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime(_on: bool) -> bool {
    false
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

    /// The index of the slowest block.
    fn worst_block(&self) -> usize {
        self.nanos.iter().enumerate().max_by_key(|&(_, nanos)| nanos).map_or(0, |(index, _)| index)
    }

    /// `(p50, p99, max)` in microseconds.
    fn summary(&self) -> (f64, f64, f64) {
        let mut sorted = self.nanos.clone();
        sorted.sort_unstable();
        (Self::quantile_us(&sorted, 0.5), Self::quantile_us(&sorted, 0.99), Self::quantile_us(&sorted, 1.0))
    }
}

/// Capturing a linear playback from 0.
fn run_capture(host: &mut Host, blocks: usize) -> Outcome {
    let (nanos, faults) = timed_blocks(host, blocks, |_| Ok(true))?;
    Ok((nanos, format!("{:.0} s captured, {faults} page faults", host.position as f64 / f64::from(RATE))))
}

/// Generates a take of the region (untimed), then loops from half a second before it to half a second after.
fn run_take(host: &mut Host, blocks: usize) -> Outcome {
    host.capture_region();
    host.generate();
    let deadline = Instant::now() + JOB_TIMEOUT;
    // The worker hands the take to the audio thread before it reports the job done.
    while host.job_status()? != (false, 1) {
        if Instant::now() > deadline {
            return Err(format!("no take after {} s", JOB_TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    host.loop_over(REGION_S.0 - 0.5, REGION_S.1 + 0.5);
    let (nanos, faults) = timed_blocks(host, blocks, |_| Ok(true))?;
    let fade_ms = host.shared.params.xfade_ms.value();
    Ok((nanos, format!("edge crossfade {fade_ms:.0} ms, {faults} page faults")))
}

/// Loops over the region while the worker runs repaint jobs back to back, starting the next as soon as it is
/// idle; keeps only the blocks processed while a job was running.
fn run_engine_job(host: &mut Host, blocks: usize) -> Outcome {
    host.capture_region();
    let mut requested = false;
    let mut takes = 0;
    let (nanos, faults) = timed_blocks(host, blocks, |host| {
        // What the editor sees between two blocks.
        let (running, made) = host.job_status()?;
        if running || made != takes {
            requested = false;
            takes = made;
        }
        if !running && !requested {
            host.generate();
            requested = true;
        }
        Ok(running)
    })?;
    Ok((nanos, format!("{takes} jobs finished, {faults} page faults")))
}

/// Runs `step` once per `period`, on real-time priority where allowed, until it has returned `count` times to
/// keep (`Some(nanoseconds)`).
fn paced(
    period: Duration,
    count: usize,
    mut step: impl FnMut() -> Result<Option<u64>, String>,
) -> Result<Vec<u64>, String> {
    let mut pacer = Pacer::new(period);
    // Written once so that storing the times takes no page faults (they would be counted as the plugin's).
    let mut nanos = vec![u64::MAX; count];
    nanos.clear();
    let realtime = set_realtime(true);
    let mut outcome = Ok(());
    while nanos.len() < count && outcome.is_ok() {
        outcome = step().map(|kept| nanos.extend(kept));
        pacer.wait();
    }
    if realtime {
        set_realtime(false);
    }
    outcome.map(|()| nanos)
}

/// Processes blocks paced at real time until `blocks` of them were kept; `keep` runs (untimed) before each
/// block and says whether to keep its time. Returns the kept times and the page faults the audio thread took.
fn timed_blocks(
    host: &mut Host,
    blocks: usize,
    mut keep: impl FnMut(&mut Host) -> Result<bool, String>,
) -> Result<(Vec<u64>, u64), String> {
    let faults_before = thread_page_faults();
    let nanos = paced(host.period(), blocks, || {
        let kept = keep(host)?;
        let elapsed = host.block().as_nanos() as u64;
        Ok(kept.then_some(elapsed))
    })?;
    let faults = thread_page_faults().zip(faults_before).map_or(0, |(after, before)| after - before);
    Ok((nanos, faults))
}

/// The machine's own jitter, for reading the table: a busy-wait of [`JITTER_PROBE`] timed, paced and scheduled
/// like a block. Anything it measures beyond the wait is the machine (interrupts, the hypervisor), not Retake.
fn run_jitter_probe(block: usize, blocks: usize) -> Outcome {
    let period = Duration::from_secs_f64(block as f64 / f64::from(RATE));
    let nanos = paced(period, blocks, || {
        let start = Instant::now();
        while start.elapsed() < JITTER_PROBE {}
        Ok(Some(start.elapsed().as_nanos() as u64))
    })?;
    Ok((nanos, format!("{} µs busy-wait: measures the machine, not Retake", JITTER_PROBE.as_micros())))
}

/// Runs `scenario` at `block` frames per block on a freshly activated plugin; returns the kept block times and
/// a note.
fn run(scenario: Scenario, block: usize, blocks: usize, engine: &EngineConfig) -> Outcome {
    let on_plugin: fn(&mut Host, usize) -> Outcome = match scenario {
        Scenario::Capture => run_capture,
        Scenario::TakeCrossfades => run_take,
        Scenario::EngineJob => run_engine_job,
        Scenario::JitterProbe => return run_jitter_probe(block, blocks),
    };
    Host::activate(block, engine).and_then(|mut host| on_plugin(&mut host, blocks))
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
        "{:<36} {:>6} {:>7} {:>9} {:>9} {:>9} {:>10} {:>7}  notes",
        "scenario (48 kHz stereo)", "block", "blocks", "p50 µs", "p99 µs", "max µs", "max/period", "worst #"
    );
    for timings in results {
        let (p50, p99, max) = timings.summary();
        println!(
            "{:<36} {:>6} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.3}% {:>7}  {}",
            timings.scenario.name(),
            timings.block,
            timings.nanos.len(),
            p50,
            p99,
            max,
            max / timings.period_us() * 100.0,
            timings.worst_block(),
            timings.note
        );
    }
    let worst_64 = results
        .iter()
        .filter(|t| t.block == 64 && t.scenario != Scenario::JitterProbe)
        .map(|t| t.summary().2 / t.period_us())
        .fold(0.0, f64::max);
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
    let scheduling = if set_realtime(true) && set_realtime(false) {
        format!("SCHED_FIFO priority {AUDIO_PRIORITY}")
    } else {
        "normal priority (real-time scheduling refused)".to_string()
    };
    let mut results = Vec::new();
    for scenario in Scenario::ALL {
        for block in BLOCK_SIZES {
            if scenario == Scenario::JitterProbe && block != BLOCK_SIZES[0] {
                continue;
            }
            let seconds = blocks as f64 * block as f64 / f64::from(RATE);
            eprintln!("{} at {block} frames: {blocks} blocks, at least {seconds:.0} s …", scenario.name());
            match run(scenario, block, blocks, &engine) {
                Ok((nanos, note)) => results.push(Timings { scenario, block, nanos, note }),
                Err(err) => {
                    eprintln!("{err}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
    }
    println!("audio loop: {scheduling}, paced at real time");
    print_table(&results);
    std::process::ExitCode::SUCCESS
}
