//! Takes: the persisted takes list, their WAV files under `<takes root>/<project-id>/` ([`takes_root`]), and
//! loading them back as playable audio at the host rate, reporting missing or altered files.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nih_plug::params::persist::PersistentField;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use retake_engine::audio::{self, Audio, WavFormat};

use crate::capture::TIMELINE_FRAMES;
use crate::error::{PluginError, Result};
use crate::params::CAPTURE_MINUTES;
use crate::playback::PlayableTake;
use crate::region::Region;

/// The takes list keeps at most this many; the oldest goes first.
pub const MAX_TAKES: usize = 16;

/// One take's audio file and the hash of its content as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeFile {
    /// Absolute path of the 24-bit WAV.
    pub path: PathBuf,
    /// Its sample rate.
    pub sample_rate: u32,
    /// [`audio::content_hash`] of the audio as read back after writing.
    pub hash: u64,
}

/// Everything remembered about a take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeMeta {
    /// Unique within the project.
    pub id: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix_s: u64,
    /// Where it plays on the host timeline.
    pub region: Region,
    /// One line describing the request (task, strength, caption, key).
    pub summary: String,
    /// The seed it was generated with.
    pub seed: u64,
    /// The region at the model rate (48 kHz).
    pub model_file: TakeFile,
    /// The region at the host rate it was made at.
    pub host_file: TakeFile,
}

/// The persisted part of the takes list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TakesState {
    /// Names this plugin instance's take folder.
    pub project_id: String,
    /// The next take id to hand out.
    pub next_id: u64,
    /// Oldest first.
    pub takes: Vec<TakeMeta>,
    /// The take that plays.
    pub selected: Option<u64>,
    /// Names the user gave takes in the editor, by id (a take without one is shown as "Take <id>").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<u64, String>,
}

impl TakesState {
    /// The take with `id`.
    pub fn get(&self, id: u64) -> Option<&TakeMeta> {
        self.takes.iter().find(|take| take.id == id)
    }

    /// The id the next take gets. Ids are never reused; once `next_id` reaches `u64::MAX` (only a crafted
    /// state gets there) no take can be added.
    pub fn new_id(&self) -> Result<u64> {
        (self.next_id < u64::MAX).then_some(self.next_id).ok_or(PluginError::TakeIdsExhausted)
    }

    /// Appends `take` and selects it; beyond [`MAX_TAKES`], removes and returns the oldest takes.
    pub fn push(&mut self, take: TakeMeta) -> Vec<TakeMeta> {
        self.selected = Some(take.id);
        self.next_id = self.next_id.max(take.id.saturating_add(1));
        self.takes.push(take);
        let excess = self.takes.len().saturating_sub(MAX_TAKES);
        let evicted: Vec<TakeMeta> = self.takes.drain(..excess).collect();
        self.forget_names_of_removed();
        evicted
    }

    /// The name take `id` is shown with: the one the user gave it, else "Take <id>".
    pub fn name(&self, id: u64) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| format!("Take {id}"))
    }

    /// Names take `id` (trimmed; an empty name goes back to "Take <id>"). A take not in the list is left alone.
    pub fn rename(&mut self, id: u64, name: &str) {
        let name = name.trim();
        if self.get(id).is_none() {
            return;
        }
        if name.is_empty() {
            self.names.remove(&id);
        } else {
            self.names.insert(id, name.to_string());
        }
    }

    /// Drops the names of takes no longer in the list.
    fn forget_names_of_removed(&mut self) {
        let takes = &self.takes;
        self.names.retain(|id, _| takes.iter().any(|take| take.id == *id));
    }

    /// Removes the take with `id` (deselecting it) and returns it.
    pub fn remove(&mut self, id: u64) -> Option<TakeMeta> {
        let index = self.takes.iter().position(|take| take.id == id)?;
        if self.selected == Some(id) {
            self.selected = None;
        }
        let take = self.takes.remove(index);
        self.forget_names_of_removed();
        Some(take)
    }

    /// Reads a saved takes list leniently: keeps every take that parses and is one Retake could have made,
    /// leaves out the rest, and says what it left out. A project id of another form than [`new_project_id`]'s
    /// could name a folder anywhere (`../../x`, an absolute path), so it is replaced by a new one and its takes
    /// are left out. Ids are never reused: `next_id` ends above every kept take's id.
    pub fn from_saved(saved: Value) -> SavedTakes {
        let Value::Object(mut saved) = saved else {
            let dropped = vec!["the saved takes list could not be read, so a new one starts".to_string()];
            return SavedTakes { state: Self { project_id: new_project_id(), ..Self::default() }, dropped };
        };
        let mut dropped = Vec::new();
        let entries = match saved.remove("takes") {
            Some(Value::Array(entries)) => entries,
            None | Some(Value::Null) => Vec::new(),
            Some(_) => {
                dropped.push("the saved takes are not a list, so none were restored".to_string());
                Vec::new()
            }
        };
        let project_id = match saved.remove("project_id") {
            Some(Value::String(id)) if is_project_id(&id) => id,
            other => {
                let shown = other.map_or_else(|| "none".to_string(), |id| id.to_string());
                dropped.push(format!(
                    "the saved project id {shown} is not one Retake makes, so its {} takes were left out and new \
                     takes go to a new folder",
                    entries.len()
                ));
                return SavedTakes { state: Self { project_id: new_project_id(), ..Self::default() }, dropped };
            }
        };
        let mut takes: Vec<TakeMeta> = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let take = match serde_json::from_value::<TakeMeta>(entry) {
                Ok(take) => take,
                Err(err) => {
                    dropped.push(format!("entry {} of the takes list was left out: {err}", index + 1));
                    continue;
                }
            };
            let problem = if takes.iter().any(|kept| kept.id == take.id) {
                Some("another take has the same id".to_string())
            } else {
                check_saved_take(&take).err()
            };
            match problem {
                Some(problem) => dropped.push(format!("take {} was left out: {problem}", take.id)),
                None => takes.push(take),
            }
        }
        let excess = takes.len().saturating_sub(MAX_TAKES);
        if excess > 0 {
            dropped.push(format!("the {excess} oldest takes beyond the {MAX_TAKES} Retake keeps were left out"));
            takes.drain(..excess);
        }
        let after_kept = takes.iter().map(|take| take.id + 1).max().unwrap_or(0);
        let next_id = saved.get("next_id").and_then(Value::as_u64).unwrap_or(0).max(after_kept);
        let selected = saved.get("selected").and_then(Value::as_u64).filter(|id| takes.iter().any(|t| t.id == *id));
        let names = saved.remove("names").and_then(|names| serde_json::from_value(names).ok()).unwrap_or_default();
        let mut state = Self { project_id, next_id, takes, selected, names };
        state.forget_names_of_removed();
        SavedTakes { state, dropped }
    }

    /// Leaves out the takes with a file that is not directly inside `folder` (the project's take folder):
    /// Retake reads and deletes only files there. Returns what it left out.
    pub fn retain_in_folder(&mut self, folder: &Path) -> Vec<String> {
        let mut dropped = Vec::new();
        self.takes.retain(|take| {
            let outside =
                [&take.model_file.path, &take.host_file.path].into_iter().find(|path| !directly_in(folder, path));
            if let Some(path) = outside {
                dropped.push(format!(
                    "take {} was left out: its file {} is not in this project's take folder {}",
                    take.id,
                    path.display(),
                    folder.display()
                ));
            }
            outside.is_none()
        });
        if self.selected.is_some_and(|id| self.get(id).is_none()) {
            self.selected = None;
        }
        self.forget_names_of_removed();
        dropped
    }
}

/// Refuses a saved take Retake could not have made: the last id (reserved, see [`TakesState::new_id`]), or a
/// region that is empty, negative, past the capture timeline or longer than the largest capture.
fn check_saved_take(take: &TakeMeta) -> std::result::Result<(), String> {
    let Region { start, end, sample_rate } = take.region;
    if take.id == u64::MAX {
        return Err("its id is out of range".to_string());
    }
    let longest_s = f64::from(*CAPTURE_MINUTES.end()) * 60.0;
    if sample_rate == 0 || start < 0 || end <= start || end > TIMELINE_FRAMES {
        return Err(format!("its region {start}..{end} at {sample_rate} Hz is not one Retake records"));
    }
    if (end - start) as f64 > longest_s * f64::from(sample_rate) {
        return Err(format!("its region is longer than the largest capture ({longest_s} s)"));
    }
    Ok(())
}

/// Whether `id` has the form [`new_project_id`] gives: 16 lowercase hex digits.
pub fn is_project_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The take folder of project `project_id` under `root`. Refuses an id of another form than
/// [`new_project_id`]'s: it could name a folder elsewhere.
pub fn project_folder(root: &Path, project_id: &str) -> Result<PathBuf> {
    if !is_project_id(project_id) {
        return Err(PluginError::ProjectId(project_id.to_string()));
    }
    Ok(root.join(project_id))
}

/// Whether `path` names an entry directly inside `folder`, by its text (a `..` never counts as inside).
fn directly_in(folder: &Path, path: &Path) -> bool {
    path.parent() == Some(folder) && matches!(path.components().next_back(), Some(Component::Normal(_)))
}

/// A fresh project id: 16 hex digits from the process's randomly keyed hasher, the time and the process id.
fn new_project_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// The takes list as a saved state carries it: written as its [`TakesState`], read with
/// [`TakesState::from_saved`], which keeps what is valid (a strict read would lose the whole list, and with
/// it the project id, to one bad take) and lists what it left out.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedTakes {
    /// The list as restored.
    pub state: TakesState,
    /// What was left out, one line each.
    pub dropped: Vec<String>,
}

impl From<TakesState> for SavedTakes {
    fn from(state: TakesState) -> Self {
        Self { state, dropped: Vec::new() }
    }
}

impl Serialize for SavedTakes {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.state.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SavedTakes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Value::deserialize(deserializer).map(TakesState::from_saved)
    }
}

/// The `#[persist]` field holding [`TakesState`]; counts how often the host restored it, so the worker
/// knows when to check the restored list and load takes from disk, and keeps what a restore left out until
/// the worker reports it.
#[derive(Debug)]
pub struct TakesField {
    state: RwLock<TakesState>,
    restores: AtomicU64,
    dropped: Mutex<Vec<String>>,
}

impl Default for TakesField {
    fn default() -> Self {
        let state = TakesState { project_id: new_project_id(), ..TakesState::default() };
        Self { state: RwLock::new(state), restores: AtomicU64::new(0), dropped: Mutex::new(Vec::new()) }
    }
}

impl TakesField {
    /// Reads the state.
    pub fn read(&self) -> RwLockReadGuard<'_, TakesState> {
        self.state.read()
    }

    /// Changes the state.
    pub fn update<R>(&self, change: impl FnOnce(&mut TakesState) -> R) -> R {
        change(&mut self.state.write())
    }

    /// How many times the host has restored the field.
    pub fn restores(&self) -> u64 {
        self.restores.load(Ordering::Acquire)
    }

    /// What the restores since the last call left out of the list (see [`TakesState::from_saved`]).
    pub fn take_dropped(&self) -> Vec<String> {
        std::mem::take(&mut self.dropped.lock())
    }
}

impl<'a> PersistentField<'a, SavedTakes> for TakesField {
    fn set(&self, new_value: SavedTakes) {
        *self.state.write() = new_value.state;
        self.dropped.lock().extend(new_value.dropped);
        self.restores.fetch_add(1, Ordering::Release);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&SavedTakes) -> R,
    {
        f(&SavedTakes::from(self.state.read().clone()))
    }
}

/// `$XDG_DATA_HOME/retake/takes` (falling back to `~/.local/share/retake/takes`); on Windows
/// `%APPDATA%\retake\takes` (see [`user_folders`](crate::user_folders)).
pub fn takes_root() -> Result<PathBuf> {
    let data_home = crate::user_folders::data_home().ok_or(PluginError::NoDataFolder)?;
    Ok(data_home.join("retake").join("takes"))
}

/// Writes `audio` as a 24-bit WAV at `path`, reads it back and returns its record and the audio as stored.
fn write_take_file(path: PathBuf, audio: &Audio) -> retake_engine::Result<(TakeFile, Audio)> {
    audio::write_wav(&path, audio, WavFormat::Int24)?;
    let stored = audio::read_wav(&path)?;
    Ok((TakeFile { hash: audio::content_hash(&stored), sample_rate: stored.sample_rate, path }, stored))
}

/// Writes take `id`'s audio into `dir` at the model rate and the host rate. Returns the two file records and
/// the host-rate audio exactly as stored (what plays now is what a reload will play).
pub fn export_take(
    dir: &Path,
    id: u64,
    model_audio: &Audio,
    host_audio: &Audio,
) -> Result<(TakeFile, TakeFile, Audio)> {
    let (model_file, _) = write_take_file(dir.join(format!("take-{id:03}-48k.wav")), model_audio)?;
    let host_name = format!("take-{id:03}-{}hz.wav", host_audio.sample_rate);
    let (host_file, stored) = write_take_file(dir.join(host_name), host_audio)?;
    Ok((model_file, host_file, stored))
}

/// Copies take `take`'s host-rate file from `folder` (the project's take folder, checked as for playing) to
/// `destination`, a new `.wav` file (an existing file is never overwritten).
pub fn export_copy(take: &TakeMeta, folder: &Path, destination: &Path) -> std::result::Result<(), String> {
    let source = &take.host_file.path;
    if !destination.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("wav")) {
        return Err(format!("{} does not end in .wav: export to a .wav file", destination.display()));
    }
    if !destination.is_absolute() {
        return Err(format!("{} is not a full path: start it at / (or a drive letter)", destination.display()));
    }
    if inspect(folder, source).map_err(|problem| problem.to_string())? == OnDisk::Missing {
        return Err(TakeProblem::Missing(source.clone()).to_string());
    }
    let mut target = std::fs::OpenOptions::new().write(true).create_new(true).open(destination).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} already exists: pick another name", destination.display())
        } else {
            format!("cannot write {}: {err}", destination.display())
        }
    })?;
    let copied = std::fs::File::open(source).and_then(|mut from| std::io::copy(&mut from, &mut target));
    copied.map(|_| ()).map_err(|err| {
        let _ = std::fs::remove_file(destination);
        format!("cannot copy {} to {}: {err}", source.display(), destination.display())
    })
}

/// Deletes a take's files from `folder`, the project's take folder; already missing files are fine. Deletes
/// nothing unless both are regular files directly in `folder` (or missing).
pub fn delete_take_files(take: &TakeMeta, folder: &Path) -> Result<()> {
    let files = [&take.model_file.path, &take.host_file.path];
    let mut present = Vec::with_capacity(files.len());
    for path in files {
        if inspect(folder, path)? == OnDisk::Regular {
            present.push(path);
        }
    }
    for path in present {
        match std::fs::remove_file(path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(PluginError::Delete { path: path.clone(), source });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a take from the saved state cannot play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeProblem {
    /// The file is gone.
    Missing(PathBuf),
    /// The file's content no longer matches the hash saved with it.
    Altered(PathBuf),
    /// The file could not be read or converted.
    Unreadable(String),
    /// The path is not directly inside the project's take folder.
    OutsideFolder(PathBuf),
    /// The path is a link, folder, pipe or device, not a regular file.
    NotRegularFile(PathBuf),
}

impl std::fmt::Display for TakeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(path) => write!(f, "file {} is missing", path.display()),
            Self::Altered(path) => write!(f, "file {} was changed since Retake wrote it", path.display()),
            Self::Unreadable(message) => f.write_str(message),
            Self::OutsideFolder(path) => {
                write!(f, "{} is not in this project's take folder, so Retake leaves it alone", path.display())
            }
            Self::NotRegularFile(path) => write!(
                f,
                "{} is not a regular file (a link, folder or pipe), so Retake leaves it alone",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TakeProblem {}

/// What is at a take file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDisk {
    Missing,
    Regular,
}

/// Looks at take file `path` without opening or following it. Only a regular file directly inside `folder`
/// is one Retake reads or deletes: a link could point anywhere, and opening a pipe would block the reader
/// until something writes to it.
fn inspect(folder: &Path, path: &Path) -> std::result::Result<OnDisk, TakeProblem> {
    if !directly_in(folder, path) {
        return Err(TakeProblem::OutsideFolder(path.to_path_buf()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => Ok(OnDisk::Regular),
        Ok(_) => Err(TakeProblem::NotRegularFile(path.to_path_buf())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(OnDisk::Missing),
        Err(err) => Err(TakeProblem::Unreadable(format!("cannot look at {}: {err}", path.display()))),
    }
}

/// Reads `file` from `folder` and checks it against its saved hash.
fn read_checked(file: &TakeFile, folder: &Path) -> std::result::Result<Audio, TakeProblem> {
    if inspect(folder, &file.path)? == OnDisk::Missing {
        return Err(TakeProblem::Missing(file.path.clone()));
    }
    let audio = audio::read_wav(&file.path).map_err(|err| TakeProblem::Unreadable(err.to_string()))?;
    if audio::content_hash(&audio) != file.hash {
        return Err(TakeProblem::Altered(file.path.clone()));
    }
    Ok(audio)
}

/// `frames` frames of `audio` from frame `start`, padded with silence where `audio` ends early.
pub fn excerpt(audio: &Audio, start: usize, frames: usize) -> Audio {
    let channels = audio
        .channels
        .iter()
        .map(|channel| {
            let available = channel.get(start..).unwrap_or(&[]);
            let mut samples = available[..available.len().min(frames)].to_vec();
            samples.resize(frames, 0.0);
            samples
        })
        .collect();
    Audio::new(audio.sample_rate, channels)
}

/// Turns host-rate audio into a take playing `region` with `channels` channels: mono is duplicated, stereo
/// averaged to mono for a mono host, and the length fitted to the region (cut or padded with silence).
pub fn playable(id: u64, region: Region, audio: &Audio, channels: usize) -> PlayableTake {
    let frames = region.frames();
    let sources = &audio.channels;
    let channels = match (channels, sources.len()) {
        (_, 0) => vec![vec![0.0; frames]; channels.max(1)],
        (1, n) if n > 1 => {
            let len = sources.iter().map(Vec::len).min().unwrap_or(0);
            let mixed = (0..len).map(|i| sources.iter().map(|c| c[i]).sum::<f32>() / n as f32).collect();
            excerpt(&Audio::new(audio.sample_rate, vec![mixed]), 0, frames).channels
        }
        (wanted, n) => {
            let fitted = excerpt(audio, 0, frames).channels;
            (0..wanted.max(1)).map(|c| fitted[c.min(n - 1)].clone()).collect()
        }
    };
    PlayableTake { id, sample_rate: region.sample_rate, start: region.start, channels }
}

/// Loads `take` from `folder` (the project's take folder) for a host at `host_rate` with `channels` channels:
/// the host-rate file when the rate matches, otherwise the 48 kHz file resampled; each checked against its
/// saved hash.
pub fn load_take(
    take: &TakeMeta,
    folder: &Path,
    host_rate: u32,
    channels: usize,
) -> std::result::Result<PlayableTake, TakeProblem> {
    let region = take.region.at_rate(host_rate);
    let audio = if take.host_file.sample_rate == host_rate {
        read_checked(&take.host_file, folder)?
    } else {
        let model = read_checked(&take.model_file, folder)?;
        audio::resample(&model, host_rate).map_err(|err| TakeProblem::Unreadable(err.to_string()))?
    };
    Ok(playable(take.id, region, &audio, channels))
}

/// The takes loaded for the current host configuration, and the health of every take in the list.
#[derive(Debug, Default)]
pub struct TakeLibrary {
    loaded: HashMap<u64, Arc<PlayableTake>>,
    problems: BTreeMap<u64, TakeProblem>,
}

impl TakeLibrary {
    /// Forgets every loaded take (after a sample-rate or channel change).
    pub fn clear(&mut self) {
        self.loaded.clear();
        self.problems.clear();
    }

    /// Adds a take that was just made.
    pub fn insert(&mut self, take: Arc<PlayableTake>) {
        self.problems.remove(&take.id);
        self.loaded.insert(take.id, take);
    }

    /// Forgets take `id`.
    pub fn remove(&mut self, id: u64) {
        self.loaded.remove(&id);
        self.problems.remove(&id);
    }

    /// Take `meta` ready to play at `host_rate` / `channels`, loading it from `folder` if needed. A problem
    /// is remembered (see [`TakeLibrary::problems`]) and returned.
    pub fn get(
        &mut self,
        meta: &TakeMeta,
        folder: &Path,
        host_rate: u32,
        channels: usize,
    ) -> std::result::Result<Arc<PlayableTake>, TakeProblem> {
        if let Some(take) = self.loaded.get(&meta.id).filter(|take| take.sample_rate == host_rate) {
            return Ok(take.clone());
        }
        match load_take(meta, folder, host_rate, channels) {
            Ok(take) => {
                let take = Arc::new(take);
                self.insert(take.clone());
                Ok(take)
            }
            Err(problem) => {
                self.problems.insert(meta.id, problem.clone());
                Err(problem)
            }
        }
    }

    /// Checks every take in `state` (loading each from `folder`), so the editor can show which ones cannot
    /// play.
    pub fn check_all(&mut self, state: &TakesState, folder: &Path, host_rate: u32, channels: usize) {
        self.loaded.retain(|id, _| state.get(*id).is_some());
        self.problems.retain(|id, _| state.get(*id).is_some());
        for take in &state.takes {
            // Problems are recorded by `get`.
            let _ = self.get(take, folder, host_rate, channels);
        }
    }

    /// Takes that cannot play, by id.
    pub fn problems(&self) -> &BTreeMap<u64, TakeProblem> {
        &self.problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("retake-takes-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn meta(id: u64) -> TakeMeta {
        let file = TakeFile { path: PathBuf::new(), sample_rate: 48_000, hash: 0 };
        TakeMeta {
            id,
            created_unix_s: 0,
            region: Region { start: 0, end: 10, sample_rate: 48_000 },
            summary: String::new(),
            seed: 0,
            model_file: file.clone(),
            host_file: file,
        }
    }

    fn tone(rate: u32, frames: usize) -> Audio {
        let wave = |phase: f32| (0..frames).map(|i| (i as f32 * 0.01 + phase).sin() * 0.5).collect();
        Audio::new(rate, vec![wave(0.0), wave(1.0)])
    }

    #[test]
    fn pushing_beyond_the_limit_evicts_the_oldest_take_and_selects_the_new_one() {
        let mut state = TakesState::default();
        for id in 0..MAX_TAKES as u64 {
            assert!(state.push(meta(id)).is_empty());
        }
        let evicted = state.push(meta(99));
        assert_eq!(evicted.iter().map(|take| take.id).collect::<Vec<_>>(), vec![0]);
        assert_eq!(state.takes.len(), MAX_TAKES);
        assert_eq!(state.selected, Some(99));
        assert_eq!(state.next_id, 100);
    }

    #[test]
    fn restoring_the_field_counts_restores() {
        let field = TakesField::default();
        assert_eq!(field.read().project_id.len(), 16);
        let restored = TakesState { project_id: "abc".into(), ..TakesState::default() };
        field.set(SavedTakes { state: restored.clone(), dropped: vec!["take 3 was left out".into()] });
        assert_eq!(field.restores(), 1);
        assert_eq!(field.map(|saved| saved.clone()), SavedTakes::from(restored));
        assert_eq!(field.take_dropped(), vec!["take 3 was left out".to_string()]);
        assert!(field.take_dropped().is_empty(), "reported once");
    }

    #[test]
    fn exported_takes_reload_at_the_host_rate_and_from_48k_after_a_rate_change() {
        let dir = temp_dir("export");
        let model = tone(48_000, 4_800);
        let host = tone(44_100, 4_410);
        let (model_file, host_file, stored) = export_take(&dir, 3, &model, &host).unwrap();
        assert_eq!(host_file.sample_rate, 44_100);
        let take = TakeMeta {
            region: Region { start: 44_100, end: 48_510, sample_rate: 44_100 },
            model_file,
            host_file,
            ..meta(3)
        };
        let same_rate = load_take(&take, &dir, 44_100, 2).unwrap();
        assert_eq!(same_rate.channels, stored.channels);
        assert_eq!(same_rate.start, 44_100);
        let new_rate = load_take(&take, &dir, 96_000, 2).unwrap();
        assert_eq!((new_rate.start, new_rate.frames(), new_rate.sample_rate), (96_000, 9_600, 96_000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_altered_files_are_reported_not_fatal() {
        let dir = temp_dir("health");
        let (model_file, host_file, _) = export_take(&dir, 1, &tone(48_000, 480), &tone(48_000, 480)).unwrap();
        let take =
            TakeMeta { region: Region { start: 0, end: 480, sample_rate: 48_000 }, model_file, host_file, ..meta(1) };
        let state = TakesState { takes: vec![take.clone()], ..TakesState::default() };
        audio::write_wav(&take.host_file.path, &tone(48_000, 400), WavFormat::Int24).unwrap();
        let mut library = TakeLibrary::default();
        library.check_all(&state, &dir, 48_000, 2);
        assert_eq!(library.problems().get(&1), Some(&TakeProblem::Altered(take.host_file.path.clone())));
        delete_take_files(&take, &dir).unwrap();
        library.clear();
        library.check_all(&state, &dir, 48_000, 2);
        assert_eq!(library.problems().get(&1), Some(&TakeProblem::Missing(take.host_file.path.clone())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn playable_fits_length_and_channel_count() {
        let region = Region { start: 5, end: 15, sample_rate: 48_000 };
        let stereo = Audio::new(48_000, vec![vec![1.0; 8], vec![0.0; 8]]);
        let mono = playable(1, region, &stereo, 1);
        assert_eq!(mono.channels, vec![[vec![0.5; 8], vec![0.0; 2]].concat()]);
        let widened = playable(1, region, &Audio::new(48_000, vec![vec![0.25; 12]]), 2);
        assert_eq!(widened.channels, vec![vec![0.25; 10], vec![0.25; 10]]);
        assert_eq!((widened.start, widened.end()), (5, 15));
    }

    const PROJECT: &str = "0123456789abcdef";

    /// A saved take as JSON, its files at `dir/take-<id>-*.wav`.
    fn saved_take(id: u64, dir: &Path) -> Value {
        let file =
            |name: &str| TakeFile { path: dir.join(format!("take-{id:03}-{name}.wav")), sample_rate: 48_000, hash: 1 };
        let take = TakeMeta { model_file: file("48k"), host_file: file("48000hz"), ..meta(id) };
        serde_json::to_value(take).unwrap()
    }

    fn saved_list(project_id: &str, next_id: u64, takes: Vec<Value>, selected: Option<u64>) -> Value {
        serde_json::json!({ "project_id": project_id, "next_id": next_id, "takes": takes, "selected": selected })
    }

    #[test]
    fn a_saved_list_keeps_every_valid_take_and_names_each_one_left_out() {
        let dir = PathBuf::from("/data/retake/takes").join(PROJECT);
        let mut no_rate = saved_take(4, &dir);
        no_rate["region"]["sample_rate"] = 0.into();
        let mut endless = saved_take(5, &dir);
        endless["region"]["end"] = i64::MAX.into();
        let mut long = saved_take(6, &dir);
        long["region"]["end"] = (7_201 * 48_000).into();
        let takes = vec![
            saved_take(1, &dir),
            serde_json::json!({ "id": "two" }),
            saved_take(3, &dir),
            no_rate,
            endless,
            long,
            saved_take(3, &dir),
            saved_take(u64::MAX, &dir),
        ];
        let SavedTakes { state, dropped } = TakesState::from_saved(saved_list(PROJECT, 2, takes, Some(4)));
        assert_eq!(state.project_id, PROJECT);
        assert_eq!(state.takes.iter().map(|take| take.id).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(state.next_id, 4, "above every kept id, whatever the saved next_id says");
        assert_eq!(state.selected, None, "the selected take was left out");
        assert_eq!(dropped.len(), 6, "{dropped:?}");
        assert!(dropped[0].starts_with("entry 2 of the takes list was left out: "), "{dropped:?}");
        assert_eq!(dropped[1], "take 4 was left out: its region 0..10 at 0 Hz is not one Retake records");
        assert!(dropped[2].starts_with("take 5 was left out: its region 0.."), "{dropped:?}");
        assert_eq!(dropped[3], "take 6 was left out: its region is longer than the largest capture (7200 s)");
        assert_eq!(dropped[4], "take 3 was left out: another take has the same id");
        assert_eq!(dropped[5], format!("take {} was left out: its id is out of range", u64::MAX));
    }

    #[test]
    fn a_saved_project_id_of_another_form_gets_a_new_folder_and_its_takes_are_left_out() {
        for hostile in ["../../x", "/home/user", "0123456789ABCDEF", "0123456789abcdef0", ""] {
            let dir = PathBuf::from("/data/retake/takes").join(hostile);
            let SavedTakes { state, dropped } =
                TakesState::from_saved(saved_list(hostile, 9, vec![saved_take(1, &dir)], Some(1)));
            assert!(is_project_id(&state.project_id) && state.project_id != hostile, "{hostile}");
            assert!(state.takes.is_empty() && state.selected.is_none(), "{hostile}");
            assert_eq!(
                dropped,
                vec![format!(
                    "the saved project id \"{hostile}\" is not one Retake makes, so its 1 takes were left out and \
                     new takes go to a new folder"
                )]
            );
            let root = Path::new("/data/retake/takes");
            assert!(matches!(project_folder(root, hostile), Err(PluginError::ProjectId(id)) if id == hostile));
        }
        assert_eq!(project_folder(Path::new("/t"), PROJECT).unwrap(), Path::new("/t").join(PROJECT));
        let SavedTakes { state, dropped } = TakesState::from_saved(Value::Null);
        assert!(is_project_id(&state.project_id) && state.takes.is_empty());
        assert_eq!(dropped, vec!["the saved takes list could not be read, so a new one starts".to_string()]);
    }

    #[test]
    fn a_bad_take_in_a_restored_state_costs_only_that_take() {
        use nih_plug::prelude::Params;
        let dir = PathBuf::from("/data/retake/takes").join(PROJECT);
        let list =
            saved_list(PROJECT, 3, vec![saved_take(1, &dir), serde_json::json!(17), saved_take(2, &dir)], Some(2));
        let fields = BTreeMap::from([("takes".to_string(), list.to_string())]);
        let params = crate::params::RetakeParams::default();
        params.deserialize_fields(&fields);
        let state = params.takes.read().clone();
        assert_eq!((state.project_id.as_str(), state.takes.len(), state.selected), (PROJECT, 2, Some(2)));
        let dropped = params.takes.take_dropped();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].starts_with("entry 2 of the takes list was left out"), "{dropped:?}");
    }

    #[test]
    fn ids_are_never_reused_and_run_out_with_a_clear_error() {
        let mut state = TakesState { next_id: u64::MAX - 1, ..TakesState::default() };
        let id = state.new_id().unwrap();
        assert!(state.push(meta(id)).is_empty());
        assert_eq!(state.next_id, u64::MAX);
        let err = state.new_id().unwrap_err();
        assert!(matches!(err, PluginError::TakeIdsExhausted));
        assert!(err.to_string().starts_with("this project's takes list has used up its take ids"), "{err}");
        let SavedTakes { state, .. } = TakesState::from_saved(saved_list(PROJECT, u64::MAX, Vec::new(), None));
        assert!(state.new_id().is_err(), "a saved next_id of u64::MAX does not wrap to 0");
    }

    #[test]
    fn only_takes_with_both_files_directly_in_the_project_folder_are_kept() {
        let folder = PathBuf::from("/data/retake/takes").join(PROJECT);
        let with_paths = |id: u64, model: PathBuf, host: PathBuf| TakeMeta {
            model_file: TakeFile { path: model, sample_rate: 48_000, hash: 0 },
            host_file: TakeFile { path: host, sample_rate: 48_000, hash: 0 },
            ..meta(id)
        };
        let inside = |name: &str| folder.join(name);
        let mut state = TakesState {
            project_id: PROJECT.into(),
            next_id: 5,
            takes: vec![
                with_paths(0, inside("a.wav"), inside("b.wav")),
                with_paths(1, inside("a.wav"), PathBuf::from("/home/user/song.wav")),
                with_paths(2, folder.join("../other/a.wav"), inside("b.wav")),
                with_paths(3, inside("a.wav"), folder.join("sub/b.wav")),
                with_paths(4, inside("a.wav"), folder.join("..")),
            ],
            selected: Some(1),
            names: BTreeMap::new(),
        };
        let dropped = state.retain_in_folder(&folder);
        assert_eq!(state.takes.iter().map(|take| take.id).collect::<Vec<_>>(), vec![0]);
        assert_eq!(state.selected, None);
        assert_eq!(dropped.len(), 4, "{dropped:?}");
        assert_eq!(
            dropped[0],
            format!(
                "take 1 was left out: its file /home/user/song.wav is not in this project's take folder {}",
                folder.display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn links_pipes_and_outside_files_are_never_read_or_deleted() {
        let dir = temp_dir("refuse");
        let folder = dir.join(PROJECT);
        std::fs::create_dir_all(&folder).unwrap();
        let precious = dir.join("song.wav");
        audio::write_wav(&precious, &tone(48_000, 480), WavFormat::Int24).unwrap();
        let link = folder.join("take-001-48k.wav");
        std::os::unix::fs::symlink(&precious, &link).unwrap();
        let pipe = folder.join("take-001-48000hz.wav");
        assert!(std::process::Command::new("mkfifo").arg(&pipe).status().unwrap().success());
        let file = |path: &Path| TakeFile { path: path.to_path_buf(), sample_rate: 48_000, hash: 0 };
        let outside = TakeMeta { model_file: file(&precious), host_file: file(&folder.join("x.wav")), ..meta(1) };
        let err = delete_take_files(&outside, &folder).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is not in this project's take folder, so Retake leaves it alone", precious.display())
        );
        let linked = TakeMeta { model_file: file(&link), host_file: file(&pipe), ..meta(1) };
        assert!(
            matches!(delete_take_files(&linked, &folder), Err(PluginError::TakeFile(TakeProblem::NotRegularFile(path))) if path == link)
        );
        // Reading the pipe would block until something writes to it; it is refused unopened.
        assert_eq!(load_take(&linked, &folder, 48_000, 2).unwrap_err(), TakeProblem::NotRegularFile(pipe.clone()));
        assert_eq!(load_take(&linked, &folder, 44_100, 2).unwrap_err(), TakeProblem::NotRegularFile(link.clone()));
        assert_eq!(load_take(&outside, &folder, 44_100, 2).unwrap_err(), TakeProblem::OutsideFolder(precious.clone()));
        assert!(
            precious.is_file() && std::fs::symlink_metadata(&link).is_ok() && std::fs::symlink_metadata(&pipe).is_ok()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn takes_root_follows_xdg_data_home() {
        // Only checks the shape; the environment is not modified (tests run in parallel).
        let root = takes_root().unwrap();
        assert!(root.ends_with("retake/takes"));
        assert!(root.is_absolute());
    }

    #[test]
    fn a_renamed_take_keeps_its_name_through_a_save_and_loses_it_when_it_leaves_the_list() {
        let mut state = TakesState { project_id: "0123456789abcdef".into(), ..TakesState::default() };
        state.push(meta(0));
        state.push(meta(1));
        state.rename(1, "  chorus, darker  ");
        state.rename(7, "not listed");
        assert_eq!((state.name(0), state.name(1)), ("Take 0".to_string(), "chorus, darker".to_string()));
        assert_eq!(state.names.len(), 1, "a take not in the list gets no name");
        let saved = serde_json::to_value(&state).unwrap();
        assert_eq!(TakesState::from_saved(saved).state.name(1), "chorus, darker");
        state.rename(1, " ");
        assert_eq!(state.name(1), "Take 1", "an empty name goes back to the default");
        state.rename(1, "solo");
        state.remove(1);
        assert!(state.names.is_empty(), "a deleted take's name is forgotten");
        // A list saved before names existed reads back with none.
        let older = serde_json::json!({"project_id": "0123456789abcdef", "next_id": 0, "takes": [], "selected": null});
        assert!(TakesState::from_saved(older).state.names.is_empty());
    }

    #[test]
    fn export_copies_the_take_file_and_never_overwrites() {
        let dir = temp_dir("export");
        let folder = dir.join("0123456789abcdef");
        std::fs::create_dir_all(&folder).unwrap();
        let (model_file, host_file, _) = export_take(&folder, 3, &tone(48_000, 480), &tone(44_100, 441)).unwrap();
        let take = TakeMeta { model_file, host_file: host_file.clone(), ..meta(3) };
        let destination = dir.join("chorus.wav");
        export_copy(&take, &folder, &destination).unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), std::fs::read(&host_file.path).unwrap());
        let again = export_copy(&take, &folder, &destination).unwrap_err();
        assert_eq!(again, format!("{} already exists: pick another name", destination.display()));
        let not_wav = export_copy(&take, &folder, &dir.join("chorus.mp3")).unwrap_err();
        assert!(not_wav.contains("does not end in .wav"), "{not_wav}");
        let relative = export_copy(&take, &folder, Path::new("chorus2.wav")).unwrap_err();
        assert!(relative.contains("is not a full path"), "{relative}");
        std::fs::remove_file(&host_file.path).unwrap();
        let gone = export_copy(&take, &folder, &dir.join("later.wav")).unwrap_err();
        assert!(gone.contains("is missing") && !dir.join("later.wav").exists(), "{gone}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
