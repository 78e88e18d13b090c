//! Where the model's files (docs/acestep-model.md §1) come from: a local folder or the Hugging Face repo, resolved to a
//! model root that [`Checkpoint::open`](crate::model::checkpoint::Checkpoint::open) accepts.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{EngineError, Result};
use crate::model::checkpoint::{missing_files, REQUIRED_FILES};

/// The Hugging Face repo holding ACE-Step 1.5.
pub const DEFAULT_REPO: &str = "ACE-Step/Ace-Step1.5";
/// The revision used unless another is asked for.
pub const DEFAULT_REVISION: &str = "main";

/// Download progress is reported at least every this many bytes (and at the start and end of each file).
const REPORT_EVERY_BYTES: u64 = 4 << 20;

/// Where to find the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder laid out like the Hugging Face repo.
    Dir(PathBuf),
    /// A Hugging Face model repo at a revision (branch, tag or commit), fetched into the local HF cache.
    HuggingFace {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit hash.
        revision: String,
    },
}

impl Default for ModelSource {
    /// `ACE-Step/Ace-Step1.5` at `main`.
    fn default() -> Self {
        Self::HuggingFace { repo: DEFAULT_REPO.to_owned(), revision: DEFAULT_REVISION.to_owned() }
    }
}

/// Progress of one file's download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProgress {
    /// The file, relative to the model root (e.g. `vae/diffusion_pytorch_model.safetensors`).
    pub file: String,
    /// Bytes of this file on disk so far.
    pub bytes_done: u64,
    /// Size of this file.
    pub bytes_total: u64,
}

/// Where the Hugging Face cache lives and whether the network may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub cache folder (holding `models--owner--name/`).
    pub cache_dir: PathBuf,
    /// When true, only the cache is consulted.
    pub offline: bool,
    /// Hub URL to download from instead of `https://huggingface.co` (a mirror).
    pub endpoint: Option<String>,
}

impl HubSettings {
    /// The settings `huggingface-cli` would use: the cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`; offline when `HF_HUB_OFFLINE` is
    /// 1/true/yes/on; downloads go to `$HF_ENDPOINT` when set. (hf-hub 0.5 reads only `HF_HOME` and
    /// `HF_ENDPOINT`, and panics without a home folder, so this is done here.)
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let cache_dir = hub_cache_dir(var, std::env::home_dir()).ok_or_else(|| {
            EngineError::invalid(
                "cannot locate the Hugging Face cache (no home folder); set HF_HOME or HF_HUB_CACHE, \
                 or point Retake at a model folder",
            )
        })?;
        Ok(Self {
            cache_dir,
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v)),
            endpoint: var("HF_ENDPOINT"),
        })
    }
}

impl ModelSource {
    /// Returns a local model root holding every file in [`REQUIRED_FILES`], downloading missing ones for a
    /// Hugging Face source (cache settings from the environment, see [`HubSettings::from_env`]).
    /// `progress` hears about downloads only; files already present are not reported.
    pub fn resolve(&self, progress: &mut dyn FnMut(LoadProgress)) -> Result<PathBuf> {
        match self {
            Self::Dir(root) => check_model_dir(root),
            Self::HuggingFace { .. } => self.resolve_with(&HubSettings::from_env()?, progress),
        }
    }

    /// The local model root if every required file is already on this machine (the folder, or the Hugging
    /// Face cache), without downloading anything; `None` when something is missing.
    pub fn local_root(&self) -> Option<PathBuf> {
        let cache_only = HubSettings { offline: true, ..HubSettings::from_env().ok()? };
        self.resolve_with(&cache_only, &mut |_| {}).ok()
    }

    /// [`resolve`](Self::resolve) with explicit hub settings.
    pub fn resolve_with(&self, hub: &HubSettings, progress: &mut dyn FnMut(LoadProgress)) -> Result<PathBuf> {
        match self {
            Self::Dir(root) => check_model_dir(root),
            Self::HuggingFace { repo, revision } => resolve_from_hub(repo, revision, hub, progress),
        }
    }
}

/// The cache folder in `huggingface_hub`'s order of precedence; `var` reads an environment variable.
fn hub_cache_dir(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(cache) = var("HF_HUB_CACHE") {
        return Some(cache.into());
    }
    let hf_home = match (var("HF_HOME"), var("XDG_CACHE_HOME")) {
        (Some(hf_home), _) => PathBuf::from(hf_home),
        (None, Some(xdg)) => Path::new(&xdg).join("huggingface"),
        (None, None) => home?.join(".cache").join("huggingface"),
    };
    Some(hf_home.join("hub"))
}

fn is_truthy(value: &str) -> bool {
    ["1", "true", "yes", "on"].iter().any(|t| value.eq_ignore_ascii_case(t))
}

fn check_model_dir(root: &Path) -> Result<PathBuf> {
    let missing = missing_files(root, REQUIRED_FILES)?;
    match missing.first() {
        None => Ok(root.to_path_buf()),
        Some(first) => Err(EngineError::MissingFile {
            path: root.join(first),
            hint: format!(
                "{} of the model's files are missing from `{}` ({}); fetch them with `{} --local-dir {}`",
                missing.len(),
                root.display(),
                missing.join(", "),
                fetch_command(DEFAULT_REPO, DEFAULT_REVISION, &missing),
                root.display()
            ),
        }),
    }
}

fn resolve_from_hub(
    repo_id: &str,
    revision: &str,
    hub: &HubSettings,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<PathBuf> {
    let cache = Cache::new(hub.cache_dir.clone());
    let repo = Repo::with_revision(repo_id.to_owned(), RepoType::Model, revision.to_owned());
    let mut missing = match cached_snapshot(&cache, &repo) {
        Ok(root) => return Ok(root),
        Err(missing) => missing,
    };
    let not_cached = |missing: &[&str], why: &str| not_in_cache(hub, repo_id, revision, missing, why);
    if hub.offline {
        return Err(not_cached(&missing, "HF_HUB_OFFLINE is set, so nothing is downloaded"));
    }
    let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(false);
    if let Some(endpoint) = &hub.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let api = builder
        .build()
        .map_err(|e| not_cached(&missing, &format!("the downloader could not start ({e})")))?
        .repo(repo.clone());
    // A download moves `refs/<revision>` to the newest commit; if that differs from the cached one, files
    // found in the older snapshot are missing from the new one, and the second pass fetches them.
    for _ in 0..2 {
        for file in &missing {
            api.download_with_progress(file, Reporter::new(file, progress))
                .map_err(|e| not_cached(&missing, &format!("downloading `{file}` failed ({e})")))?;
        }
        missing = match cached_snapshot(&cache, &repo) {
            Ok(root) => return Ok(root),
            Err(missing) => missing,
        };
    }
    Err(not_cached(&missing, "the repo changed while downloading; try again"))
}

/// The snapshot folder of `repo` holding every required file, or the required files it lacks.
fn cached_snapshot(cache: &Cache, repo: &Repo) -> std::result::Result<PathBuf, Vec<&'static str>> {
    let cached = cache.repo(repo.clone());
    let mut root = None;
    let mut missing = Vec::new();
    for &file in REQUIRED_FILES {
        match cached.get(file) {
            // The snapshot folder is the found path minus the file's own components.
            Some(path) => root = path.ancestors().nth(Path::new(file).components().count()).map(Path::to_path_buf),
            None => missing.push(file),
        }
    }
    match root {
        Some(root) if missing.is_empty() => Ok(root),
        _ => Err(missing),
    }
}

fn not_in_cache(hub: &HubSettings, repo: &str, revision: &str, missing: &[&str], why: &str) -> EngineError {
    EngineError::MissingFile {
        path: PathBuf::from(missing.first().copied().unwrap_or_default()),
        hint: format!(
            "{} of the model's files are not in the Hugging Face cache `{}` ({}) and {why}; fetch them with `{}`, \
             or point Retake at a complete model folder",
            missing.len(),
            hub.cache_dir.display(),
            missing.join(", "),
            fetch_command(repo, revision, missing)
        ),
    }
}

fn fetch_command(repo: &str, revision: &str, files: &[&str]) -> String {
    format!("huggingface-cli download {repo} {} --revision {revision}", files.join(" "))
}

/// Forwards hf-hub's byte counts for one file as [`LoadProgress`], at most every [`REPORT_EVERY_BYTES`].
struct Reporter<'a> {
    file: &'a str,
    done: u64,
    total: u64,
    reported: u64,
    sink: &'a mut dyn FnMut(LoadProgress),
}

impl<'a> Reporter<'a> {
    fn new(file: &'a str, sink: &'a mut dyn FnMut(LoadProgress)) -> Self {
        Self { file, done: 0, total: 0, reported: 0, sink }
    }

    fn report(&mut self) {
        self.reported = self.done;
        (self.sink)(LoadProgress { file: self.file.to_owned(), bytes_done: self.done, bytes_total: self.total });
    }
}

impl Progress for Reporter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.report();
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        if self.done - self.reported >= REPORT_EVERY_BYTES {
            self.report();
        }
    }

    fn finish(&mut self) {
        self.report();
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::checkpoint::Checkpoint;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn fixture_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
    }

    /// Lays the fixture model out as `huggingface-cli` would cache it at `main`, leaving out `skip`.
    fn hub_cache(skip: &[&str]) -> tempfile::TempDir {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--ACE-Step--Ace-Step1.5");
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        for file in REQUIRED_FILES.iter().filter(|f| !skip.contains(f)) {
            let dst = repo.join("snapshots").join(COMMIT).join(file);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(fixture_root().join(file), dst).unwrap();
        }
        cache
    }

    fn offline(cache: &tempfile::TempDir) -> HubSettings {
        HubSettings { cache_dir: cache.path().to_path_buf(), offline: true, endpoint: None }
    }

    fn no_progress() -> impl FnMut(LoadProgress) {
        |p| panic!("nothing should be downloaded, got {p:?}")
    }

    #[test]
    fn default_source_is_ace_step_main() {
        let expected = ModelSource::HuggingFace { repo: "ACE-Step/Ace-Step1.5".into(), revision: "main".into() };
        assert_eq!(ModelSource::default(), expected);
    }

    #[test]
    fn complete_hub_cache_resolves_to_its_snapshot_which_opens() {
        let cache = hub_cache(&[]);
        let root = ModelSource::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap();
        assert_eq!(root, cache.path().join("models--ACE-Step--Ace-Step1.5/snapshots").join(COMMIT));
        let ckpt = Checkpoint::open(&root, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(ckpt.acestep.hidden_size, 64);
    }

    #[test]
    fn offline_cache_missing_a_file_names_it_and_the_fetch_command() {
        let cache = hub_cache(&["vae/diffusion_pytorch_model.safetensors"]);
        let err = ModelSource::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap_err();
        let EngineError::MissingFile { path, hint } = &err else { panic!("expected MissingFile, got {err}") };
        assert_eq!(path, Path::new("vae/diffusion_pytorch_model.safetensors"));
        assert!(hint.starts_with("1 of the model's files are not in the Hugging Face cache"), "{hint}");
        assert!(hint.contains("HF_HUB_OFFLINE"), "{hint}");
        assert!(
            hint.contains(
                "`huggingface-cli download ACE-Step/Ace-Step1.5 vae/diffusion_pytorch_model.safetensors --revision main`"
            ),
            "{hint}"
        );
    }

    #[test]
    fn unreachable_hub_gives_missing_file_with_the_fetch_command() {
        let cache = hub_cache(&["acestep-v15-turbo/silence_latent.pt"]);
        let hub = HubSettings { endpoint: Some("http://127.0.0.1:1".into()), offline: false, ..offline(&cache) };
        let err = ModelSource::default().resolve_with(&hub, &mut no_progress()).unwrap_err();
        let EngineError::MissingFile { path, hint } = &err else { panic!("expected MissingFile, got {err}") };
        assert_eq!(path, Path::new("acestep-v15-turbo/silence_latent.pt"));
        assert!(hint.contains("downloading `acestep-v15-turbo/silence_latent.pt` failed"), "{hint}");
        assert!(
            hint.contains("huggingface-cli download ACE-Step/Ace-Step1.5 acestep-v15-turbo/silence_latent.pt"),
            "{hint}"
        );
    }

    #[test]
    fn empty_offline_cache_lists_every_required_file() {
        let cache = tempfile::tempdir().unwrap();
        let err = ModelSource::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap_err();
        let EngineError::MissingFile { hint, .. } = &err else { panic!("expected MissingFile, got {err}") };
        assert!(hint.contains(&format!("download ACE-Step/Ace-Step1.5 {} --revision main", REQUIRED_FILES.join(" "))));
    }

    #[test]
    fn complete_dir_resolves_to_itself() {
        let root = ModelSource::Dir(fixture_root()).resolve(&mut no_progress()).unwrap();
        assert_eq!(root, fixture_root());
    }

    #[test]
    fn only_a_complete_model_folder_is_local() {
        assert_eq!(ModelSource::Dir(fixture_root()).local_root(), Some(fixture_root()));
        let partial = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(partial.path().join("vae")).unwrap();
        std::fs::copy(fixture_root().join("vae/config.json"), partial.path().join("vae/config.json")).unwrap();
        assert_eq!(ModelSource::Dir(partial.path().to_path_buf()).local_root(), None);
    }

    #[test]
    fn dir_missing_files_lists_them_with_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vae")).unwrap();
        std::fs::copy(fixture_root().join("vae/config.json"), dir.path().join("vae/config.json")).unwrap();
        let err = ModelSource::Dir(dir.path().to_path_buf()).resolve(&mut no_progress()).unwrap_err();
        let EngineError::MissingFile { path, hint } = &err else { panic!("expected MissingFile, got {err}") };
        assert_eq!(path, &dir.path().join("acestep-v15-turbo/config.json"));
        assert!(hint.starts_with("7 of the model's files are missing"), "{hint}");
        assert!(!hint.contains("vae/config.json"), "{hint}");
        assert!(hint.contains(&format!("--local-dir {}`", dir.path().display())), "{hint}");
    }

    #[test]
    fn dir_with_a_folder_for_a_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vae/config.json")).unwrap();
        let err = ModelSource::Dir(dir.path().to_path_buf()).resolve(&mut no_progress()).unwrap_err();
        assert!(matches!(&err, EngineError::Io { path, .. } if path.ends_with("vae/config.json")), "{err}");
        assert!(err.to_string().contains("it is a folder, not a file"), "{err}");
    }

    #[test]
    fn cache_dir_follows_huggingface_precedence() {
        fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |name| set.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        }
        let home = || Some(PathBuf::from("/home/u"));
        let all = [("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x")];
        assert_eq!(hub_cache_dir(vars(&all), home()), Some(PathBuf::from("/c")));
        assert_eq!(hub_cache_dir(vars(&all[1..]), home()), Some(PathBuf::from("/h/hub")));
        assert_eq!(hub_cache_dir(vars(&all[2..]), home()), Some(PathBuf::from("/x/huggingface/hub")));
        assert_eq!(hub_cache_dir(vars(&[]), home()), Some(PathBuf::from("/home/u/.cache/huggingface/hub")));
        assert_eq!(hub_cache_dir(vars(&[]), None), None);
    }

    #[test]
    fn offline_flag_accepts_huggingface_truthy_values() {
        for v in ["1", "true", "TRUE", "yes", "On"] {
            assert!(is_truthy(v), "{v}");
        }
        for v in ["0", "false", "no", "off", "2"] {
            assert!(!is_truthy(v), "{v}");
        }
    }

    #[test]
    fn reporter_sends_start_throttled_steps_and_end() {
        let mut seen = Vec::new();
        let mut sink = |p: LoadProgress| seen.push(p.bytes_done);
        let mut reporter = Reporter::new("vae/x.safetensors", &mut sink);
        let total = 10 * REPORT_EVERY_BYTES;
        reporter.init(total as usize, "vae/x.safetensors");
        for _ in 0..40 {
            reporter.update((REPORT_EVERY_BYTES / 4) as usize);
        }
        reporter.finish();
        let steps: Vec<u64> = (0..=10).map(|k| k * REPORT_EVERY_BYTES).collect();
        assert_eq!(seen, [steps, vec![total]].concat());
    }
}
