//! Where the model's files (docs/acestep-model.md §1) come from: a local folder or the Hugging Face hub, for one of
//! the nine checkpoint variants (model/variant.rs), resolved to the [`ModelDirs`] that
//! [`Checkpoint::open_dirs`](crate::model::checkpoint::Checkpoint::open_dirs) accepts: the main folder (VAE, text
//! encoder, tokenizer, silence latent) from `ACE-Step/Ace-Step1.5` and the variant's DiT folder.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{EngineError, Result};
use crate::model::checkpoint::{missing_files, ModelDirs, DIT_CONFIG, DIT_INDEX, DIT_WEIGHTS, MAIN_FILES};
use crate::model::variant::{Variant, MAIN_REPO};
use crate::model::weights::shard_names;

/// The Hugging Face repo holding ACE-Step 1.5's main model (and the turbo DiT).
pub const DEFAULT_REPO: &str = MAIN_REPO;
/// The revision used unless another is asked for.
pub const DEFAULT_REVISION: &str = "main";
/// The folder of the official code repo (`ace-step/ACE-Step-1.5`) holding the main model's folders and one folder
/// per variant's DiT.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// Download progress is reported at least every this many bytes (and at the start and end of each file).
const REPORT_EVERY_BYTES: u64 = 4 << 20;

/// Where the main model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder laid out like the Hugging Face repo `ACE-Step/Ace-Step1.5`, or like the official code repo's
    /// `checkpoints/` folder, or a folder holding such a `checkpoints/` folder.
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

/// Which checkpoint to run and where its files come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSpec {
    /// The main model; for the default variant (turbo) also the DiT, which the main repo holds.
    pub source: ModelSource,
    /// The checkpoint variant.
    pub variant: Variant,
    /// The DiT folder to use instead of the variant's: `config.json` and `model.safetensors` (or
    /// `model.safetensors.index.json` and its shards), maybe a `silence_latent.pt`.
    pub dit_dir: Option<PathBuf>,
}

impl From<ModelSource> for ModelSpec {
    /// The turbo variant from `source`.
    fn from(source: ModelSource) -> Self {
        Self { source, ..Self::default() }
    }
}

/// Progress of one file's download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProgress {
    /// The file as it lies in the official `checkpoints/` layout (e.g. `vae/diffusion_pytorch_model.safetensors`,
    /// `acestep-v15-xl-base/model-00001-of-00002.safetensors`).
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

impl ModelSpec {
    /// The main and DiT folders holding every file this variant needs, downloading missing ones for a Hugging
    /// Face source (cache settings from the environment, see [`HubSettings::from_env`]). `progress` hears about
    /// downloads only; files already present are not reported.
    pub fn resolve(&self, progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelDirs> {
        match &self.source {
            ModelSource::Dir(root) => self.resolve_local(root),
            ModelSource::HuggingFace { .. } => self.resolve_with(&HubSettings::from_env()?, progress),
        }
    }

    /// The folders if every file is already on this machine (the folders, or the Hugging Face cache), without
    /// downloading anything; `None` when something is missing.
    pub fn local_dirs(&self) -> Option<ModelDirs> {
        let cache_only = HubSettings { offline: true, ..HubSettings::from_env().ok()? };
        self.resolve_with(&cache_only, &mut |_| {}).ok()
    }

    /// [`resolve`](Self::resolve) with explicit hub settings.
    pub fn resolve_with(&self, hub: &HubSettings, progress: &mut dyn FnMut(LoadProgress)) -> Result<ModelDirs> {
        let (repo, revision) = match &self.source {
            ModelSource::Dir(root) => return self.resolve_local(root),
            ModelSource::HuggingFace { repo, revision } => (repo, revision),
        };
        let variant = self.variant;
        let Some(dit_dir) = &self.dit_dir else {
            if let Some(folder) = variant.repo_folder() {
                // The DiT lives in the main repo: one fetch brings both.
                let main = fetch(repo, revision, &main_layout_files(folder, variant), "", hub, progress)?;
                return Ok(ModelDirs { dit: main.join(folder), main });
            }
            let main = fetch(repo, revision, MAIN_FILES, "", hub, progress)?;
            return Ok(ModelDirs { main, dit: fetch_dit(variant, hub, progress)? });
        };
        let main = fetch(repo, revision, MAIN_FILES, "", hub, progress)?;
        report(vec![dit_gap(dit_dir, variant)?])?;
        Ok(ModelDirs { main, dit: dit_dir.clone() })
    }

    /// The folders under a local model folder `root`: the main folder is `root`, or `root/checkpoints` when only
    /// that one holds the main files; the DiT folder is [`dit_dir`](Self::dit_dir), else the first of
    /// `root/<folder>` and `root/checkpoints/<folder>` that exists. Every missing file is named at once, with the
    /// commands that fetch it.
    fn resolve_local(&self, root: &Path) -> Result<ModelDirs> {
        let variant = self.variant;
        let main = main_folder(root);
        let dit = self.dit_dir.clone().unwrap_or_else(|| {
            let candidates = [root.join(variant.folder()), root.join(CHECKPOINTS_DIR).join(variant.folder())];
            candidates.into_iter().find(|dir| dir.is_dir()).unwrap_or_else(|| main.join(variant.folder()))
        });
        let gaps = match variant.repo_folder() {
            // The DiT in its folder of the main layout: both come from the main repo into the main folder.
            Some(folder) if dit == main.join(folder) => {
                vec![Gap::new(&main, MAIN_REPO, &main_layout_files(folder, variant))?]
            }
            _ => vec![dit_gap(&dit, variant)?, Gap::new(&main, MAIN_REPO, MAIN_FILES)?],
        };
        report(gaps)?;
        Ok(ModelDirs { main, dit })
    }
}

/// `root` when it holds the main files, else `root/checkpoints` when that does (the official code repo's root).
fn main_folder(root: &Path) -> PathBuf {
    let complete = |dir: &Path| missing_files(dir, MAIN_FILES).is_ok_and(|missing| missing.is_empty());
    let nested = root.join(CHECKPOINTS_DIR);
    if !complete(root) && complete(&nested) {
        nested
    } else {
        root.to_path_buf()
    }
}

/// The files of the main layout when it holds the variant's DiT in `folder` (as the main repo holds turbo's): the
/// DiT's config and weights there, then [`MAIN_FILES`].
fn main_layout_files(folder: &str, variant: Variant) -> Vec<String> {
    let weights = if variant.is_sharded() { DIT_INDEX } else { DIT_WEIGHTS };
    let dit = [DIT_CONFIG, weights].map(|file| format!("{folder}/{file}"));
    dit.into_iter().chain(MAIN_FILES.iter().map(|file| file.to_string())).collect()
}

/// What a local DiT folder of `variant` lacks: its config and its weights — the shard index and every shard it
/// names when there is an index, else `model.safetensors` (for a sharded variant without either, the index).
fn dit_gap(dit: &Path, variant: Variant) -> Result<Gap> {
    let index = dit.join(DIT_INDEX);
    let mut files = vec![DIT_CONFIG.to_owned()];
    if index.is_file() {
        files.push(DIT_INDEX.to_owned());
        files.extend(shard_names(&index)?);
    } else if dit.join(DIT_WEIGHTS).is_file() || !variant.is_sharded() {
        files.push(DIT_WEIGHTS.to_owned());
    } else {
        files.push(DIT_INDEX.to_owned());
    }
    let mut gap = Gap::new(dit, &variant.repo(), &files)?;
    gap.repo_folder = variant.repo_folder();
    Ok(gap)
}

/// Files absent from one local folder, and the Hugging Face repo they come from.
struct Gap {
    /// The folder they belong in.
    dir: PathBuf,
    /// The repo that has them.
    repo: String,
    /// The folder of the repo that `dir` mirrors (`None`: the repo's root).
    repo_folder: Option<&'static str>,
    /// The missing files, relative to `dir`.
    files: Vec<String>,
}

impl Gap {
    /// The `files` (relative to `dir`) missing from `dir`, which come from `repo`'s root.
    fn new(dir: &Path, repo: &str, files: &[impl AsRef<str>]) -> Result<Self> {
        let files: Vec<&str> = files.iter().map(AsRef::as_ref).collect();
        let missing = missing_files(dir, &files)?.into_iter().map(str::to_owned).collect();
        Ok(Self { dir: dir.to_path_buf(), repo: repo.to_owned(), repo_folder: None, files: missing })
    }

    /// How to put the missing files in place: the `huggingface-cli` command in backticks (and, for a folder
    /// that mirrors a folder of the repo, the move out of the folder the command creates).
    fn instructions(&self) -> String {
        let in_repo: Vec<String> = match self.repo_folder {
            Some(folder) => self.files.iter().map(|file| format!("{folder}/{file}")).collect(),
            None => self.files.clone(),
        };
        let names: Vec<&str> = in_repo.iter().map(String::as_str).collect();
        let command = fetch_command(&self.repo, DEFAULT_REVISION, &names);
        let dir = self.dir.display();
        match self.repo_folder {
            Some(folder) => {
                format!("`{command} --local-dir {dir}`, then move the files from `{dir}/{folder}` up into it")
            }
            None => format!("`{command} --local-dir {dir}`"),
        }
    }
}

/// Nothing when every gap is empty, else one [`EngineError::MissingFile`] naming every missing file and the commands
/// that fetch them.
fn report(gaps: Vec<Gap>) -> Result<()> {
    let gaps: Vec<Gap> = gaps.into_iter().filter(|gap| !gap.files.is_empty()).collect();
    let Some(first) = gaps.first() else { return Ok(()) };
    let count: usize = gaps.iter().map(|gap| gap.files.len()).sum();
    let places: Vec<String> =
        gaps.iter().map(|gap| format!("{} in `{}`", gap.files.join(", "), gap.dir.display())).collect();
    let commands: Vec<String> = gaps.iter().map(Gap::instructions).collect();
    Err(EngineError::MissingFile {
        path: first.dir.join(&first.files[0]),
        hint: format!(
            "{count} of the model's files are missing ({}); fetch them with {}",
            places.join("; "),
            commands.join(" and ")
        ),
    })
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

/// The snapshot folder of `variant`'s own repo (at [`DEFAULT_REVISION`]) holding its DiT: the config and
/// `model.safetensors`, or the config, the shard index and then every shard the index names.
fn fetch_dit(variant: Variant, hub: &HubSettings, progress: &mut dyn FnMut(LoadProgress)) -> Result<PathBuf> {
    let repo = variant.repo();
    let label = format!("{}/", variant.folder());
    if !variant.is_sharded() {
        return fetch(&repo, DEFAULT_REVISION, &[DIT_CONFIG, DIT_WEIGHTS], &label, hub, progress);
    }
    let indexed = fetch(&repo, DEFAULT_REVISION, &[DIT_CONFIG, DIT_INDEX], &label, hub, progress)?;
    let shards = shard_names(&indexed.join(DIT_INDEX))?;
    let files = [&[DIT_CONFIG, DIT_INDEX][..], &shards.iter().map(String::as_str).collect::<Vec<_>>()].concat();
    fetch(&repo, DEFAULT_REVISION, &files, &label, hub, progress)
}

/// The snapshot folder of `repo_id` at `revision` in the hub cache holding every one of `files`, downloading those
/// missing (reported to `progress` as `label` + the file) unless the hub settings say offline.
fn fetch(
    repo_id: &str,
    revision: &str,
    files: &[impl AsRef<str>],
    label: &str,
    hub: &HubSettings,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<PathBuf> {
    let files: Vec<&str> = files.iter().map(AsRef::as_ref).collect();
    let cache = Cache::new(hub.cache_dir.clone());
    let repo = Repo::with_revision(repo_id.to_owned(), RepoType::Model, revision.to_owned());
    let mut missing = match cached_snapshot(&cache, &repo, &files) {
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
            let shown = format!("{label}{file}");
            api.download_with_progress(file, Reporter::new(&shown, progress))
                .map_err(|e| not_cached(&missing, &format!("downloading `{file}` failed ({e})")))?;
        }
        missing = match cached_snapshot(&cache, &repo, &files) {
            Ok(root) => return Ok(root),
            Err(missing) => missing,
        };
    }
    Err(not_cached(&missing, "the repo changed while downloading; try again"))
}

/// The snapshot folder of `repo` holding every one of `files`, or those it lacks.
fn cached_snapshot<'a>(cache: &Cache, repo: &Repo, files: &[&'a str]) -> std::result::Result<PathBuf, Vec<&'a str>> {
    let cached = cache.repo(repo.clone());
    let mut root = None;
    let mut missing = Vec::new();
    for &file in files {
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

/// `huggingface-cli download` of `files` from `repo`; of the whole repo when the files include a shard index, whose
/// shards are known only once it is read.
fn fetch_command(repo: &str, revision: &str, files: &[&str]) -> String {
    if files.iter().any(|file| file.ends_with(DIT_INDEX)) {
        format!("huggingface-cli download {repo} --revision {revision}")
    } else {
        format!("huggingface-cli download {repo} {} --revision {revision}", files.join(" "))
    }
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
    use crate::model::checkpoint::{Checkpoint, REQUIRED_FILES};

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn fixture_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-acestep")
    }

    /// The tiny sharded XL-shaped DiT folder (config, shard index, two shards, no silence latent).
    fn xl_fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures-variants/tiny-acestep/acestep-v15-xl-base")
    }

    /// The files of a variant's DiT folder made from the fixtures: the XL folder's for the XL variants, the tiny
    /// turbo DiT's config and weights for the others. Pairs of (name in the folder, fixture file).
    fn dit_fixture_files(variant: Variant) -> Vec<(String, PathBuf)> {
        let dir = if variant.is_sharded() { xl_fixture() } else { fixture_root().join("acestep-v15-turbo") };
        let names: Vec<String> = if variant.is_sharded() {
            let shards = shard_names(&dir.join(DIT_INDEX)).unwrap();
            [vec![DIT_CONFIG.to_owned(), DIT_INDEX.to_owned()], shards].concat()
        } else {
            vec![DIT_CONFIG.to_owned(), DIT_WEIGHTS.to_owned()]
        };
        names.into_iter().map(|name| (name.clone(), dir.join(name))).collect()
    }

    /// The main fixture's files in `ACE-Step/Ace-Step1.5`'s layout, leaving out `skip`.
    fn main_fixture_files(skip: &[&str]) -> Vec<(String, PathBuf)> {
        let files = REQUIRED_FILES.iter().filter(|f| !skip.contains(f));
        files.map(|f| (f.to_string(), fixture_root().join(f))).collect()
    }

    /// Copies `files` (name, source) into the folder `to`.
    fn copy_into(to: &Path, files: &[(String, PathBuf)]) {
        for (name, from) in files {
            let dst = to.join(name);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(from, dst).unwrap();
        }
    }

    /// Lays `files` out as `huggingface-cli` caches repo `repo_id` at `main` under the hub cache `cache`; returns the
    /// snapshot folder.
    fn cache_repo(cache: &Path, repo_id: &str, files: &[(String, PathBuf)]) -> PathBuf {
        let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        let snapshot = repo.join("snapshots").join(COMMIT);
        copy_into(&snapshot, files);
        snapshot
    }

    /// The fixture model laid out as `huggingface-cli` would cache it at `main`, leaving out `skip`.
    fn hub_cache(skip: &[&str]) -> tempfile::TempDir {
        let cache = tempfile::tempdir().unwrap();
        cache_repo(cache.path(), DEFAULT_REPO, &main_fixture_files(skip));
        cache
    }

    fn offline(cache: &tempfile::TempDir) -> HubSettings {
        HubSettings { cache_dir: cache.path().to_path_buf(), offline: true, endpoint: None }
    }

    fn no_progress() -> impl FnMut(LoadProgress) {
        |p| panic!("nothing should be downloaded, got {p:?}")
    }

    fn spec(source: ModelSource, variant: Variant) -> ModelSpec {
        ModelSpec { source, variant, dit_dir: None }
    }

    /// Opens `dirs` and checks the DiT is the one `variant`'s fixture files hold (XL width 96, 2B width 64).
    fn assert_opens_as(dirs: &ModelDirs, variant: Variant) {
        let ckpt = Checkpoint::open_dirs(dirs, DType::F32, &Device::Cpu).unwrap();
        let width = if variant.is_sharded() { 96 } else { 64 };
        assert_eq!(ckpt.acestep.hidden_size, width, "{variant}");
        assert!(ckpt.acestep_weights().unwrap().tensor_count().is_some_and(|n| n > 0), "{variant}");
    }

    fn missing_hint(err: &EngineError) -> (&Path, &str) {
        let EngineError::MissingFile { path, hint } = err else { panic!("expected MissingFile, got {err}") };
        (path, hint)
    }

    #[test]
    fn default_source_is_ace_step_main_with_the_turbo_variant() {
        let expected = ModelSource::HuggingFace { repo: "ACE-Step/Ace-Step1.5".into(), revision: "main".into() };
        assert_eq!(ModelSource::default(), expected);
        assert_eq!(ModelSpec::default(), ModelSpec { source: expected, variant: Variant::Turbo, dit_dir: None });
    }

    #[test]
    fn complete_hub_cache_resolves_to_its_snapshot_which_opens() {
        let cache = hub_cache(&[]);
        let dirs = ModelSpec::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap();
        let snapshot = cache.path().join("models--ACE-Step--Ace-Step1.5/snapshots").join(COMMIT);
        assert_eq!(dirs, ModelDirs::turbo(&snapshot));
        assert_opens_as(&dirs, Variant::Turbo);
    }

    #[test]
    fn every_variant_resolves_from_its_hugging_face_layout_and_opens() {
        let cache = tempfile::tempdir().unwrap();
        let main = cache_repo(cache.path(), DEFAULT_REPO, &main_fixture_files(&[]));
        for variant in Variant::ALL {
            let dit = match variant.repo_folder() {
                Some(folder) => main.join(folder),
                None => cache_repo(cache.path(), &variant.repo(), &dit_fixture_files(variant)),
            };
            let source = ModelSource::default();
            let dirs = spec(source, variant).resolve_with(&offline(&cache), &mut no_progress()).unwrap();
            assert_eq!(dirs, ModelDirs { main: main.clone(), dit }, "{variant}");
            assert_opens_as(&dirs, variant);
        }
    }

    #[test]
    fn every_variant_resolves_from_a_checkpoints_folder_its_parent_or_a_main_folder() {
        let repo = tempfile::tempdir().unwrap();
        let checkpoints = repo.path().join(CHECKPOINTS_DIR);
        copy_into(&checkpoints, &main_fixture_files(&[]));
        for variant in &Variant::ALL[1..] {
            copy_into(&checkpoints.join(variant.folder()), &dit_fixture_files(*variant));
        }
        for variant in Variant::ALL {
            let dit = checkpoints.join(variant.folder());
            // The official code repo's root, and its checkpoints/ folder itself.
            for root in [repo.path(), checkpoints.as_path()] {
                let dirs = spec(ModelSource::Dir(root.to_path_buf()), variant).resolve(&mut no_progress()).unwrap();
                assert_eq!(dirs, ModelDirs { main: checkpoints.clone(), dit: dit.clone() }, "{variant} in {root:?}");
                assert_opens_as(&dirs, variant);
            }
        }
        // A main folder (the Hugging Face layout) with the variants' DiTs in a checkpoints/ folder beside its own.
        let main = tempfile::tempdir().unwrap();
        copy_into(main.path(), &main_fixture_files(&[]));
        copy_into(&main.path().join("checkpoints/acestep-v15-xl-sft"), &dit_fixture_files(Variant::XlSft));
        let dirs = spec(ModelSource::Dir(main.path().into()), Variant::XlSft).resolve(&mut no_progress()).unwrap();
        let dit = main.path().join("checkpoints/acestep-v15-xl-sft");
        assert_eq!(dirs, ModelDirs { main: main.path().into(), dit });
        assert_opens_as(&dirs, Variant::XlSft);
    }

    #[test]
    fn a_dit_dir_replaces_the_variant_folder_for_local_and_hub_sources() {
        let local =
            ModelSpec { dit_dir: Some(xl_fixture()), ..spec(ModelSource::Dir(fixture_root()), Variant::XlBase) };
        let dirs = local.resolve(&mut no_progress()).unwrap();
        assert_eq!(dirs, ModelDirs { main: fixture_root(), dit: xl_fixture() });
        assert_opens_as(&dirs, Variant::XlBase);
        // From the hub only the main files are needed then: the cache lacks the turbo DiT.
        let cache = hub_cache(&["acestep-v15-turbo/config.json", "acestep-v15-turbo/model.safetensors"]);
        let hub = ModelSpec { dit_dir: Some(xl_fixture()), ..spec(ModelSource::default(), Variant::XlBase) };
        let dirs = hub.resolve_with(&offline(&cache), &mut no_progress()).unwrap();
        assert_eq!(dirs.dit, xl_fixture());
        assert_opens_as(&dirs, Variant::XlBase);
    }

    #[test]
    fn a_sharded_dit_missing_a_shard_names_it_with_the_fetch_command() {
        let dit = tempfile::tempdir().unwrap();
        let files = dit_fixture_files(Variant::XlTurbo);
        let (kept, gone): (Vec<_>, Vec<_>) =
            files.into_iter().partition(|(name, _)| name != "model-00002-of-00002.safetensors");
        assert_eq!(gone.len(), 1);
        copy_into(dit.path(), &kept);
        let local =
            ModelSpec { dit_dir: Some(dit.path().into()), ..spec(ModelSource::Dir(fixture_root()), Variant::XlTurbo) };
        let err = local.resolve(&mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
        assert_eq!(path, dit.path().join("model-00002-of-00002.safetensors"));
        let command = format!(
            "`huggingface-cli download ACE-Step/acestep-v15-xl-turbo model-00002-of-00002.safetensors --revision main \
             --local-dir {}`",
            dit.path().display()
        );
        assert!(hint.starts_with("1 of the model's files are missing (model-00002-of-00002.safetensors in"), "{hint}");
        assert!(hint.ends_with(&format!("fetch them with {command}")), "{hint}");
    }

    #[test]
    fn a_missing_variant_folder_is_named_with_its_repo_and_the_whole_repo_when_sharded() {
        let err = spec(ModelSource::Dir(fixture_root()), Variant::Sft).resolve(&mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
        let dit = fixture_root().join("acestep-v15-sft");
        assert_eq!(path, dit.join("config.json"));
        let command = format!(
            "`huggingface-cli download ACE-Step/acestep-v15-sft config.json model.safetensors --revision main --local-dir {}`",
            dit.display()
        );
        assert!(hint.starts_with("2 of the model's files are missing (config.json, model.safetensors in"), "{hint}");
        assert!(hint.ends_with(&command), "{hint}");
        let err = spec(ModelSource::Dir(fixture_root()), Variant::XlBase).resolve(&mut no_progress()).unwrap_err();
        let (_, hint) = missing_hint(&err);
        let dit = fixture_root().join("acestep-v15-xl-base");
        assert!(hint.contains("(config.json, model.safetensors.index.json in"), "{hint}");
        assert!(
            hint.ends_with(&format!(
                "`huggingface-cli download ACE-Step/acestep-v15-xl-base --revision main --local-dir {}`",
                dit.display()
            )),
            "{hint}"
        );
    }

    #[test]
    fn a_turbo_dit_dir_outside_the_main_folder_says_where_the_download_puts_it() {
        let dit = tempfile::tempdir().unwrap();
        let local =
            ModelSpec { dit_dir: Some(dit.path().into()), ..spec(ModelSource::Dir(fixture_root()), Variant::Turbo) };
        let err = local.resolve(&mut no_progress()).unwrap_err();
        let (_, hint) = missing_hint(&err);
        let dir = dit.path().display();
        assert!(
            hint.ends_with(&format!(
                "`huggingface-cli download ACE-Step/Ace-Step1.5 acestep-v15-turbo/config.json \
                 acestep-v15-turbo/model.safetensors --revision main --local-dir {dir}`, then move the files from \
                 `{dir}/acestep-v15-turbo` up into it"
            )),
            "{hint}"
        );
    }

    #[test]
    fn an_offline_cache_without_the_variant_repo_names_that_repo() {
        let cache = hub_cache(&[]);
        let err =
            spec(ModelSource::default(), Variant::Sft).resolve_with(&offline(&cache), &mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
        assert_eq!(path, Path::new("config.json"));
        assert!(
            hint.contains(
                "`huggingface-cli download ACE-Step/acestep-v15-sft config.json model.safetensors --revision main`"
            ),
            "{hint}"
        );
        let err = spec(ModelSource::default(), Variant::XlTurbo)
            .resolve_with(&offline(&cache), &mut no_progress())
            .unwrap_err();
        let (_, hint) = missing_hint(&err);
        assert!(hint.contains("(config.json, model.safetensors.index.json)"), "{hint}");
        assert!(hint.contains("`huggingface-cli download ACE-Step/acestep-v15-xl-turbo --revision main`"), "{hint}");
        // With the index cached but a shard not, the shard is named.
        let files = dit_fixture_files(Variant::XlTurbo);
        cache_repo(cache.path(), "ACE-Step/acestep-v15-xl-turbo", &files[..3]);
        let err = spec(ModelSource::default(), Variant::XlTurbo)
            .resolve_with(&offline(&cache), &mut no_progress())
            .unwrap_err();
        let (path, hint) = missing_hint(&err);
        assert_eq!(path, Path::new(&files[3].0));
        assert!(
            hint.contains(&format!(
                "`huggingface-cli download ACE-Step/acestep-v15-xl-turbo {} --revision main`",
                files[3].0
            )),
            "{hint}"
        );
    }

    #[test]
    fn offline_cache_missing_a_file_names_it_and_the_fetch_command() {
        let cache = hub_cache(&["vae/diffusion_pytorch_model.safetensors"]);
        let err = ModelSpec::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
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
        let err = ModelSpec::default().resolve_with(&hub, &mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
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
        let err = ModelSpec::default().resolve_with(&offline(&cache), &mut no_progress()).unwrap_err();
        let (_, hint) = missing_hint(&err);
        assert!(hint.contains(&format!("download ACE-Step/Ace-Step1.5 {} --revision main", REQUIRED_FILES.join(" "))));
    }

    #[test]
    fn complete_dir_resolves_to_itself() {
        let dirs = ModelSpec::from(ModelSource::Dir(fixture_root())).resolve(&mut no_progress()).unwrap();
        assert_eq!(dirs, ModelDirs::turbo(&fixture_root()));
    }

    #[test]
    fn only_a_complete_model_folder_is_local() {
        let local = |dir: &Path| ModelSpec::from(ModelSource::Dir(dir.to_path_buf())).local_dirs();
        assert_eq!(local(&fixture_root()), Some(ModelDirs::turbo(&fixture_root())));
        let partial = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(partial.path().join("vae")).unwrap();
        std::fs::copy(fixture_root().join("vae/config.json"), partial.path().join("vae/config.json")).unwrap();
        assert_eq!(local(partial.path()), None);
    }

    #[test]
    fn dir_missing_files_lists_them_with_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vae")).unwrap();
        std::fs::copy(fixture_root().join("vae/config.json"), dir.path().join("vae/config.json")).unwrap();
        let err = ModelSpec::from(ModelSource::Dir(dir.path().to_path_buf())).resolve(&mut no_progress()).unwrap_err();
        let (path, hint) = missing_hint(&err);
        assert_eq!(path, dir.path().join("acestep-v15-turbo/config.json"));
        assert!(hint.starts_with("7 of the model's files are missing"), "{hint}");
        assert!(!hint.contains("vae/config.json"), "{hint}");
        assert!(hint.contains(&format!("--local-dir {}`", dir.path().display())), "{hint}");
    }

    #[test]
    fn dir_with_a_folder_for_a_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vae/config.json")).unwrap();
        let err = ModelSpec::from(ModelSource::Dir(dir.path().to_path_buf())).resolve(&mut no_progress()).unwrap_err();
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
