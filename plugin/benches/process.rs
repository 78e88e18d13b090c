//! The audio thread's cost per block (worst-case and median `process()` time as a fraction
//! of the block period, target ≤ 1 % at 48 kHz / 64 frames).
//!
//! Each block goes through exactly what the plugin's `process()` runs — the host transport converted with
//! `TransportSnapshot::from_host`, the parameters read with `BlockControls::from_params`, then
//! `Realtime::process` — at 48 kHz stereo, 64 and 512 frames per block, paced at real time on a SCHED_FIFO
//! thread (where permitted) like a host's audio callback, with the plugin's job worker running beside it as it
//! does from `activate()` on. Three scenarios: capturing a linear playback; looping across a take made by a real
//! job, so blocks pass its edge crossfades; and looping the region while the worker and the engine run repaint
//! jobs back to back. Jobs run on the tiny fixture model unless `RETAKE_MODEL_DIR` names another folder
//! (relative to the workspace root). A last row times a fixed busy-wait the same way: the machine's own jitter,
//! to read the worst cases against.
//!
//! Every row runs several passes on a freshly activated plugin. Block `i` of a pass does the same work in every
//! pass, while the machine's interruptions (timer interrupts, the hypervisor) land on different blocks each time,
//! so besides the plain worst block the table gives the worst *repeatable* block: the largest over `i` of block
//! `i`'s fastest pass, an upper bound of what `process()` itself costs that no single interruption can inflate.
//! (In the job scenario block `i` is the `i`-th block processed while a job ran, the same kind of work in every
//! pass.)
//!
//! `cargo bench -p retake --bench process [-- --seconds S --passes N]`

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
/// Seconds of audio each pass of a row processes.
const DEFAULT_SECONDS: f64 = 25.0;
/// Passes per row.
const DEFAULT_PASSES: usize = 3;
/// The target (README "Benchmarks"): the worst block at 64 frames takes at most this fraction of the block period.
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

/// Wall-clock nanoseconds `work` takes on the calling thread.
fn time_of(work: impl FnOnce()) -> u64 {
    let start = Instant::now();
    work();
    start.elapsed().as_nanos() as u64
}

/// A pass's kept block times in nanoseconds and a note about it, or why it could not run.
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
        let _ = commands.send(Command::Activated { sample_rate: RATE, channels: CHANNELS, serial: 1 });
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
    fn block(&mut self) -> u64 {
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
        let (realtime, transport) = (&mut self.realtime, &self.transport);
        let elapsed = time_of(|| {
            let snapshot = TransportSnapshot::from_host(transport);
            realtime.process(&mut audio, &snapshot, BlockControls::from_params(params));
        });
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

/// Milliseconds the hypervisor has kept this virtual machine's CPUs from running, summed over CPUs
/// (`/proc/stat`, Linux); `None` elsewhere.
#[cfg(target_os = "linux")]
fn stolen_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: u64 = stat.lines().next()?.split_whitespace().nth(8)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|&hz| hz > 0)?;
    Some(ticks * 1000 / per_second)
}

#[cfg(not(target_os = "linux"))]
fn stolen_ms() -> Option<u64> {
    None
}

/// What the system did to a paced run besides running it.
struct Disturbance {
    /// Page faults the measuring thread took.
    page_faults: u64,
    /// CPU time the hypervisor took from the machine meanwhile.
    stolen_ms: u64,
}

impl std::fmt::Display for Disturbance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} page faults, {} ms CPU steal", self.page_faults, self.stolen_ms)
    }
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

/// Per-block `process()` times of one scenario at one block size, pass by pass.
struct Timings {
    scenario: Scenario,
    block: usize,
    /// Each pass's kept block times in nanoseconds.
    passes: Vec<Vec<u64>>,
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

    /// Blocks timed per pass (the shortest pass).
    fn blocks(&self) -> usize {
        self.passes.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// `(p50, p99, max)` over every block of every pass, in microseconds.
    fn summary(&self) -> (f64, f64, f64) {
        let mut sorted: Vec<u64> = self.passes.concat();
        sorted.sort_unstable();
        (Self::quantile_us(&sorted, 0.5), Self::quantile_us(&sorted, 0.99), Self::quantile_us(&sorted, 1.0))
    }

    /// The worst repeatable block: the index and time in microseconds of the largest per-block minimum over the
    /// passes.
    fn repeatable_worst(&self) -> (usize, f64) {
        (0..self.blocks())
            .map(|i| (i, self.passes.iter().map(|pass| pass[i]).min().unwrap_or(0)))
            .max_by_key(|&(_, nanos)| nanos)
            .map_or((0, 0.0), |(i, nanos)| (i, nanos as f64 / 1e3))
    }
}

/// Capturing a linear playback from 0.
fn run_capture(host: &mut Host, blocks: usize) -> Outcome {
    let (times, disturbance) = timed_blocks(host, blocks, |_| Ok(true))?;
    Ok((times, format!("{:.0} s captured; {disturbance}", host.position as f64 / f64::from(RATE))))
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
    let (times, disturbance) = timed_blocks(host, blocks, |_| Ok(true))?;
    let fade_ms = host.shared.params.xfade_ms.value();
    Ok((times, format!("edge crossfade {fade_ms:.0} ms; {disturbance}")))
}

/// Loops over the region while the worker runs repaint jobs back to back, starting the next as soon as it is
/// idle; keeps only the blocks processed while a job was running.
fn run_engine_job(host: &mut Host, blocks: usize) -> Outcome {
    host.capture_region();
    let mut requested = false;
    let mut takes = 0;
    let (times, disturbance) = timed_blocks(host, blocks, |host| {
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
    Ok((times, format!("{takes} jobs finished; {disturbance}")))
}

/// Runs `step` once per `period`, on real-time priority where allowed, until it has returned `count` times to
/// keep.
fn paced(
    period: Duration,
    count: usize,
    mut step: impl FnMut() -> Result<Option<u64>, String>,
) -> Result<(Vec<u64>, Disturbance), String> {
    let mut pacer = Pacer::new(period);
    // Written once so that storing the times takes no page faults (they would be counted as the plugin's).
    let mut times = vec![u64::MAX; count];
    times.clear();
    let (faults_before, stolen_before) = (thread_page_faults(), stolen_ms());
    let realtime = set_realtime(true);
    let mut outcome = Ok(());
    while times.len() < count && outcome.is_ok() {
        outcome = step().map(|kept| times.extend(kept));
        pacer.wait();
    }
    if realtime {
        set_realtime(false);
    }
    let since = |after: Option<u64>, before: Option<u64>| after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b));
    let disturbance = Disturbance {
        page_faults: since(thread_page_faults(), faults_before),
        stolen_ms: since(stolen_ms(), stolen_before),
    };
    outcome.map(|()| (times, disturbance))
}

/// Processes blocks paced at real time until `blocks` of them were kept; `keep` runs (untimed) before each
/// block and says whether to keep its time.
fn timed_blocks(
    host: &mut Host,
    blocks: usize,
    mut keep: impl FnMut(&mut Host) -> Result<bool, String>,
) -> Result<(Vec<u64>, Disturbance), String> {
    paced(host.period(), blocks, || {
        let kept = keep(host)?;
        let elapsed = host.block();
        Ok(kept.then_some(elapsed))
    })
}

/// The machine's own jitter, for reading the table: a busy-wait of [`JITTER_PROBE`] timed, paced and scheduled
/// like a block. Anything it measures beyond the wait is the machine (interrupts, the hypervisor), not Retake.
fn run_jitter_probe(block: usize, blocks: usize) -> Outcome {
    let period = Duration::from_secs_f64(block as f64 / f64::from(RATE));
    let (times, disturbance) = paced(period, blocks, || {
        Ok(Some(time_of(|| {
            let start = Instant::now();
            while start.elapsed() < JITTER_PROBE {}
        })))
    })?;
    Ok((times, format!("{} µs busy-wait, no plugin; {disturbance}", JITTER_PROBE.as_micros())))
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

/// Seconds of audio per pass and passes per row: `--seconds S --passes N` (cargo's own `--bench` flag is
/// accepted and ignored).
fn args() -> Result<(f64, usize), String> {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut passes) = (DEFAULT_SECONDS, DEFAULT_PASSES);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--seconds" => {
                seconds = value()?.parse().ok().filter(|&s: &f64| s > 0.0).ok_or("--seconds needs a positive number")?
            }
            "--passes" => passes = value()?.parse().ok().filter(|&n| n > 0).ok_or("--passes needs a positive count")?,
            other => return Err(format!("unknown argument `{other}`; the options are --seconds S and --passes N")),
        }
    }
    Ok((seconds, passes))
}

fn print_table(results: &[Timings]) {
    println!(
        "{:<36} {:>6} {:>7} {:>6} {:>8} {:>8} {:>9} {:>10} {:>13} {:>10} {:>7}  notes",
        "scenario (48 kHz stereo)",
        "block",
        "blocks",
        "passes",
        "p50 µs",
        "p99 µs",
        "max µs",
        "max/period",
        "repeatable µs",
        "/period",
        "block #"
    );
    let percent = |us: f64, timings: &Timings| format!("{:.3}%", us / timings.period_us() * 100.0);
    for timings in results {
        let (p50, p99, max) = timings.summary();
        let (index, repeatable) = timings.repeatable_worst();
        println!(
            "{:<36} {:>6} {:>7} {:>6} {:>8.2} {:>8.2} {:>9.2} {:>10} {:>13.2} {:>10} {:>7}  {}",
            timings.scenario.name(),
            timings.block,
            timings.blocks(),
            timings.passes.len(),
            p50,
            p99,
            max,
            percent(max, timings),
            repeatable,
            percent(repeatable, timings),
            index,
            timings.note
        );
    }
    let at_64 = || results.iter().filter(|t| t.block == 64 && t.scenario != Scenario::JitterProbe);
    let worst = |fraction: fn(&Timings) -> f64| at_64().map(fraction).fold(0.0, f64::max);
    let plain = worst(|t| t.summary().2 / t.period_us());
    let repeatable = worst(|t| t.repeatable_worst().1 / t.period_us());
    let verdict = |fraction: f64| if fraction <= TARGET_FRACTION { "met" } else { "NOT met" };
    println!(
        "target: worst block ≤ {:.0}% of the period at 64 frames ({:.2} µs): repeatable worst {:.3}% ({}); \
         plain worst {:.3}% ({}, includes the machine's interruptions)",
        TARGET_FRACTION * 100.0,
        TARGET_FRACTION * 64.0 / f64::from(RATE) * 1e6,
        repeatable * 100.0,
        verdict(repeatable),
        plain * 100.0,
        verdict(plain),
    );
}

fn main() -> std::process::ExitCode {
    let (seconds, passes) = match args() {
        Ok(args) => args,
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
            let blocks = (seconds * f64::from(RATE) / block as f64).ceil() as usize;
            eprintln!("{} at {block} frames: {passes} passes of {blocks} blocks ({seconds} s) …", scenario.name());
            let mut timings = Timings { scenario, block, passes: Vec::with_capacity(passes), note: String::new() };
            for _ in 0..passes {
                match run(scenario, block, blocks, &engine) {
                    Ok((times, note)) => {
                        timings.passes.push(times);
                        timings.note = note;
                    }
                    Err(err) => {
                        eprintln!("{err}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            }
            results.push(timings);
        }
    }
    println!("audio loop: {scheduling}, paced at real time; notes are the last pass's");
    print_table(&results);
    std::process::ExitCode::SUCCESS
}
