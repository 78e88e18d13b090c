//! The tasks table: each official task (one `task_id`) is one or more engine jobs (one per take of its
//! `batch_size`), followed through the engine's events, written out when done, answered by `/query_result` in the
//! official shape (`acestep/api/jobs/local_cache_updates.py`, `acestep/api/http/query_result_service.py`) and
//! forgotten, files and all, `--keep-results` after it ended.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::output::Format;
use crate::runtime::{Event, JobId};

/// Where a task is, with the official status codes (0 queued or running, 1 succeeded, 2 failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the engine.
    Queued,
    /// The engine works on it.
    Running,
    /// Its files are written.
    Succeeded,
    /// It failed, was cancelled, or the server shut down before it ran.
    Failed,
}

impl Status {
    /// The official integer.
    pub fn code(self) -> u8 {
        match self {
            Self::Queued | Self::Running => 0,
            Self::Succeeded => 1,
            Self::Failed => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What a result item reports besides the file.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// The caption.
    pub prompt: String,
    /// The lyrics.
    pub lyrics: String,
    /// Tempo, when given.
    pub bpm: Option<f64>,
    /// Key, when given.
    pub key: Option<String>,
    /// Time signature, when given.
    pub time_signature: Option<String>,
    /// The DiT's folder name (e.g. `acestep-v15-turbo`).
    pub dit_model: String,
}

/// One take of a task: an engine job and its file.
#[derive(Debug)]
struct Part {
    job: Option<JobId>,
    progress: f64,
    file: Option<PathBuf>,
    seconds: Option<f64>,
}

/// One task.
#[derive(Debug)]
pub struct Task {
    status: Status,
    stage: String,
    error: Option<String>,
    created_unix: u64,
    started: Option<Instant>,
    ended: Option<Instant>,
    format: Format,
    seeds: Vec<u64>,
    info: Info,
    parts: Vec<Part>,
}

/// All tasks, and the engine jobs that belong to them.
#[derive(Debug, Default)]
pub struct Jobs {
    tasks: HashMap<String, Task>,
    owners: HashMap<JobId, (String, usize)>,
    /// Seconds the last tasks took, for `/v1/stats`.
    recent: VecDeque<f64>,
    /// The last line about the engine as a whole (loading, warnings), the official `progress_text`.
    pub log_line: String,
}

/// What to do after an event: a finished take to write, or engine jobs to cancel.
#[derive(Debug)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// Write take `index` of `task` to `path` in `format`.
    Write {
        /// The task id.
        task: String,
        /// The take.
        index: usize,
        /// The file.
        path: PathBuf,
        /// Its format.
        format: Format,
    },
    /// Cancel these jobs (a sibling take failed).
    Cancel(Vec<JobId>),
}

/// The average job time `/v1/stats` reports before any job ended (the official `ACESTEP_AVG_JOB_SECONDS`).
const INITIAL_AVG_JOB_SECONDS: f64 = 5.0;
/// How many recent jobs the average covers (the official `ACESTEP_AVG_WINDOW`).
const AVG_WINDOW: usize = 50;

impl Jobs {
    /// Tasks not yet ended (running or waiting).
    pub fn unfinished(&self) -> usize {
        self.tasks.values().filter(|t| matches!(t.status, Status::Queued | Status::Running)).count()
    }

    /// Tasks still waiting.
    pub fn waiting(&self) -> usize {
        self.tasks.values().filter(|t| t.status == Status::Queued).count()
    }

    /// Adds a task of `takes` takes; [`attach`](Self::attach) gives each its engine job.
    pub fn insert(&mut self, id: &str, format: Format, seeds: Vec<u64>, info: Info) {
        let parts = seeds.iter().map(|_| Part { job: None, progress: 0.0, file: None, seconds: None }).collect();
        let created_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let task = Task {
            status: Status::Queued,
            stage: "queued".into(),
            error: None,
            created_unix,
            started: None,
            ended: None,
            format,
            seeds,
            info,
            parts,
        };
        self.tasks.insert(id.to_owned(), task);
    }

    /// Take `index` of `task` runs as engine job `job`.
    pub fn attach(&mut self, task: &str, index: usize, job: JobId) {
        if let Some(t) = self.tasks.get_mut(task) {
            t.parts[index].job = Some(job);
            self.owners.insert(job, (task.to_owned(), index));
        }
    }

    /// Ends `task` as failed with `error` (when it has not ended yet); returns its engine jobs still to cancel.
    pub fn fail(&mut self, task: &str, stage: &str, error: String) -> Vec<JobId> {
        let Some(t) = self.tasks.get_mut(task).filter(|t| t.ended.is_none()) else { return Vec::new() };
        t.status = Status::Failed;
        t.stage = stage.into();
        t.error = Some(error);
        t.ended = Some(Instant::now());
        let jobs: Vec<JobId> = t.parts.iter().filter(|p| p.file.is_none()).filter_map(|p| p.job).collect();
        for job in &jobs {
            self.owners.remove(job);
        }
        jobs
    }

    /// The engine jobs of `task` if it has not ended: `Err` with its status code when it has, `None` when unknown.
    pub fn jobs_of(&self, task: &str) -> Option<Result<Vec<JobId>, Status>> {
        let t = self.tasks.get(task)?;
        Some(match t.ended {
            Some(_) => Err(t.status),
            None => Ok(t.parts.iter().filter(|p| p.file.is_none()).filter_map(|p| p.job).collect()),
        })
    }

    /// The tasks whose status is `status`.
    pub fn ids(&self, status: Status) -> Vec<String> {
        self.tasks.iter().filter(|(_, t)| t.status == status).map(|(id, _)| id.clone()).collect()
    }

    /// Follows one engine event.
    pub fn on_event(&mut self, event: &Event, out_dir: &Path) -> FollowUp {
        let job = match (event.job(), event) {
            (Some(job), _) => job,
            (None, Event::Loading { component, bytes_done, bytes_total }) => {
                self.log_line = format!("loading {component} ({bytes_done}/{bytes_total} bytes)");
                return FollowUp::None;
            }
            (None, Event::Warning(warning)) => {
                self.log_line = warning.clone();
                return FollowUp::None;
            }
            (None, _) => return FollowUp::None,
        };
        let Some((id, index)) = self.owners.get(&job).cloned() else { return FollowUp::None };
        let Some(task) = self.tasks.get_mut(&id) else { return FollowUp::None };
        let (progress, stage) = match event {
            Event::Encoding { .. } => (0.05, "encoding".to_owned()),
            Event::Step { k, n, .. } => {
                (0.05 + 0.85 * *k as f64 / (*n).max(1) as f64, format!("diffusion step {k}/{n}"))
            }
            Event::Decoding { tile, tiles, .. } => {
                (0.9 + 0.09 * *tile as f64 / (*tiles).max(1) as f64, "decoding".to_owned())
            }
            Event::Done { take, .. } => return self.finished(job, take.audio.duration_s(), out_dir),
            Event::Failed { error, .. } => {
                let error = format!("the engine failed: {error}");
                return FollowUp::Cancel(self.fail(&id, "failed", error));
            }
            Event::Cancelled { .. } => {
                let error = "cancelled (POST /v1/cancel, or the server shut down)".to_owned();
                return FollowUp::Cancel(self.fail(&id, "cancelled", error));
            }
            _ => return FollowUp::None,
        };
        if task.status == Status::Queued {
            task.status = Status::Running;
            task.started = Some(Instant::now());
        }
        task.parts[index].progress = progress;
        task.stage = stage;
        FollowUp::None
    }

    /// Engine job `job` finished with `seconds` of audio: where to write it.
    fn finished(&mut self, job: JobId, seconds: f64, out_dir: &Path) -> FollowUp {
        let Some((id, index)) = self.owners.get(&job).cloned() else { return FollowUp::None };
        let Some(task) = self.tasks.get_mut(&id) else { return FollowUp::None };
        let path = out_dir.join(format!("{id}_{}.{}", index + 1, task.format.extension()));
        task.parts[index].seconds = Some(seconds);
        FollowUp::Write { task: id, index, path, format: task.format }
    }

    /// Take `index` of `task` is written to `path` (or could not be: `Err` with the reason).
    pub fn written(&mut self, task: &str, index: usize, path: Result<PathBuf, String>) -> Vec<JobId> {
        let path = match path {
            Ok(path) => path,
            Err(error) => return self.fail(task, "failed", format!("cannot write the result: {error}")),
        };
        let Some(t) = self.tasks.get_mut(task).filter(|t| t.ended.is_none()) else {
            // Cancelled or failed meanwhile: the file goes.
            let _ = std::fs::remove_file(&path);
            return Vec::new();
        };
        t.parts[index].progress = 1.0;
        t.parts[index].file = Some(path);
        if let Some(job) = t.parts[index].job {
            self.owners.remove(&job);
        }
        if t.parts.iter().all(|p| p.file.is_some()) {
            t.status = Status::Succeeded;
            t.stage = "succeeded".into();
            let now = Instant::now();
            t.ended = Some(now);
            let took = now - t.started.unwrap_or(now);
            self.recent.push_back(took.as_secs_f64());
            if self.recent.len() > AVG_WINDOW {
                self.recent.pop_front();
            }
        }
        Vec::new()
    }

    /// Forgets tasks that ended more than `keep` ago; returns their files, to delete.
    pub fn expire(&mut self, now: Instant, keep: Duration) -> Vec<PathBuf> {
        let old: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.ended.is_some_and(|ended| now.saturating_duration_since(ended) >= keep))
            .map(|(id, _)| id.clone())
            .collect();
        old.iter()
            .filter_map(|id| self.tasks.remove(id))
            .flat_map(|t| t.parts.into_iter().filter_map(|p| p.file))
            .collect()
    }

    /// Whether `path` is the file of a task still kept.
    pub fn owns_file(&self, path: &Path) -> bool {
        self.tasks.values().flat_map(|t| &t.parts).any(|p| p.file.as_deref() == Some(path))
    }

    /// The `/query_result` item of `id`. An unknown id (never submitted, or expired) is failed with a message
    /// (the official server answers status 0 forever).
    pub fn query(&self, id: &str, audio_url: impl Fn(&Path) -> String) -> Value {
        let Some(t) = self.tasks.get(id) else {
            let error = format!(
                "unknown task_id `{id}`: it was never submitted to this server, or its results expired \
                 (--keep-results)"
            );
            let item =
                json!([{ "file": "", "wave": "", "status": 2, "progress": 0.0, "stage": "failed", "error": error }]);
            return json!({ "task_id": id, "result": item.to_string(), "status": 2, "progress_text": error });
        };
        let code = t.status.code();
        let base = |file: String| {
            json!({
                "file": file,
                "wave": "",
                "status": code,
                "create_time": t.created_unix,
                "env": "development",
            })
        };
        let items: Vec<Value> = match t.status {
            Status::Succeeded => {
                let seed_value = t.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                t.parts
                    .iter()
                    .map(|p| {
                        let mut item = base(p.file.as_deref().map(&audio_url).unwrap_or_default());
                        let extra = json!({
                            "prompt": t.info.prompt,
                            "lyrics": t.info.lyrics,
                            // "N/A" for what the request did not give, as the official `normalize_metas`.
                            "metas": {
                                "bpm": t.info.bpm.map_or(json!("N/A"), |bpm| json!(bpm)),
                                "duration": p.seconds,
                                "genres": "N/A",
                                "keyscale": t.info.key.as_deref().unwrap_or("N/A"),
                                "timesignature": t.info.time_signature.as_deref().unwrap_or("N/A"),
                                "prompt": t.info.prompt,
                                "lyrics": t.info.lyrics,
                            },
                            "generation_info": "",
                            "seed_value": seed_value,
                            "lm_model": "",
                            "dit_model": t.info.dit_model,
                            "progress": 1.0,
                            "stage": "succeeded",
                        });
                        merge(&mut item, extra);
                        item
                    })
                    .collect()
            }
            _ => {
                let mut item = base(String::new());
                let progress = t.parts.iter().map(|p| p.progress).sum::<f64>() / t.parts.len().max(1) as f64;
                let progress = if t.status == Status::Failed { 0.0 } else { progress };
                merge(&mut item, json!({ "progress": progress, "stage": t.stage, "error": t.error }));
                vec![item]
            }
        };
        let progress_text = match (&t.error, t.status) {
            (Some(error), _) => error.clone(),
            (None, Status::Queued | Status::Running) => self.log_line.clone(),
            (None, status) => status.name().to_owned(),
        };
        json!({
            "task_id": id,
            "result": Value::Array(items).to_string(),
            "status": code,
            "progress_text": progress_text,
        })
    }

    /// The official `/v1/stats` job counts and average job time.
    pub fn stats(&self) -> (Value, f64) {
        let mut counts = json!({ "total": self.tasks.len(), "queued": 0, "running": 0, "succeeded": 0, "failed": 0 });
        for t in self.tasks.values() {
            let slot = &mut counts[t.status.name()];
            *slot = json!(slot.as_u64().unwrap_or(0) + 1);
        }
        let avg = if self.recent.is_empty() {
            INITIAL_AVG_JOB_SECONDS
        } else {
            self.recent.iter().sum::<f64>() / self.recent.len() as f64
        };
        (counts, avg)
    }
}

fn merge(item: &mut Value, extra: Value) {
    if let (Some(item), Value::Object(extra)) = (item.as_object_mut(), extra) {
        item.extend(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &Path) -> String {
        format!("/v1/audio?path={}", path.display())
    }

    fn result(item: &Value) -> Vec<Value> {
        serde_json::from_str(item["result"].as_str().expect("result is a JSON string")).unwrap()
    }

    #[test]
    fn a_task_goes_from_queued_through_progress_to_succeeded_in_the_official_shape() {
        let mut jobs = Jobs::default();
        let out = Path::new("/out");
        jobs.insert("t1", Format::Wav16, vec![7, 8], Info { prompt: "p".into(), ..Info::default() });
        jobs.attach("t1", 0, JobId(1));
        jobs.attach("t1", 1, JobId(2));
        let queued = jobs.query("t1", url);
        assert_eq!(queued["status"], 0);
        assert_eq!(result(&queued)[0]["stage"], "queued");
        assert_eq!((jobs.unfinished(), jobs.waiting()), (1, 1));

        jobs.on_event(&Event::Step { job: JobId(1), k: 4, n: 8, eta: Duration::ZERO }, out);
        let running = result(&jobs.query("t1", url));
        assert_eq!(running[0]["stage"], "diffusion step 4/8");
        let progress = running[0]["progress"].as_f64().unwrap();
        assert!(progress > 0.2 && progress < 0.3, "half of one take of two: {progress}");
        assert_eq!((jobs.unfinished(), jobs.waiting()), (1, 0));

        for (job, index) in [(1, 0), (2, 1)] {
            let FollowUp::Write { task, index: i, path, format } = jobs.finished(JobId(job), 1.0, out) else {
                panic!("a finished take is written")
            };
            assert_eq!((task.as_str(), i, format), ("t1", index, Format::Wav16));
            assert_eq!(path, out.join(format!("t1_{}.wav", index + 1)));
            jobs.written("t1", i, Ok(path));
        }
        let done = jobs.query("t1", url);
        assert_eq!(done["status"], 1);
        let items = result(&done);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["file"], "/v1/audio?path=/out/t1_2.wav");
        assert_eq!((items[0]["seed_value"].as_str(), items[0]["stage"].as_str()), (Some("7,8"), Some("succeeded")));
        assert_eq!(items[0]["metas"]["duration"], 1.0);
        assert_eq!(
            (items[0]["metas"]["bpm"].as_str(), items[0]["metas"]["keyscale"].as_str()),
            (Some("N/A"), Some("N/A"))
        );
        assert!(jobs.owns_file(Path::new("/out/t1_1.wav")));
    }

    #[test]
    fn a_failed_take_fails_the_task_with_its_message_and_cancels_the_other() {
        let mut jobs = Jobs::default();
        jobs.insert("t", Format::Flac, vec![1, 2], Info::default());
        jobs.attach("t", 0, JobId(5));
        jobs.attach("t", 1, JobId(6));
        let follow = jobs.on_event(&Event::Failed { job: JobId(5), error: "out of memory".into() }, Path::new("/o"));
        let FollowUp::Cancel(jobs_to_cancel) = follow else { panic!("{follow:?}") };
        assert_eq!(jobs_to_cancel, [JobId(5), JobId(6)]);
        let item = jobs.query("t", url);
        assert_eq!(item["status"], 2);
        assert_eq!(result(&item)[0]["error"], "the engine failed: out of memory");
        assert_eq!(jobs.jobs_of("t"), Some(Err(Status::Failed)));
        assert_eq!(jobs.unfinished(), 0);
    }

    #[test]
    fn unknown_ids_fail_with_a_message_and_ended_tasks_expire_with_their_files() {
        let mut jobs = Jobs::default();
        let unknown = jobs.query("nope", url);
        assert_eq!(unknown["status"], 2);
        assert!(result(&unknown)[0]["error"].as_str().unwrap().contains("unknown task_id `nope`"));

        jobs.insert("a", Format::Wav32, vec![1], Info::default());
        jobs.attach("a", 0, JobId(1));
        jobs.written("a", 0, Ok(PathBuf::from("/o/a_1.wav")));
        jobs.insert("b", Format::Wav32, vec![1], Info::default());
        let now = Instant::now();
        assert!(jobs.expire(now, Duration::from_secs(60)).is_empty(), "kept for a minute");
        assert_eq!(jobs.expire(now + Duration::from_secs(61), Duration::from_secs(60)), [PathBuf::from("/o/a_1.wav")]);
        assert_eq!(jobs.query("a", url)["status"], 2, "forgotten");
        assert_eq!(jobs.query("b", url)["status"], 0, "a task still waiting is kept");
        let (counts, avg) = jobs.stats();
        assert_eq!((counts["total"].as_u64(), counts["queued"].as_u64()), (Some(1), Some(1)));
        assert!(avg >= 0.0);
    }
}
