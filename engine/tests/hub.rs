//! Downloads from a Hugging Face hub for real (engine/src/model_source.rs): a local HTTP server serves the fixture
//! files in the hub's URL layout (`/{repo}/resolve/{revision}/{file}`, byte ranges, and the `etag` and
//! `x-repo-commit` headers hf-hub 0.5 reads in `ApiRepo::download_with_progress`), Retake is pointed at it through
//! `HF_ENDPOINT` and downloads into an empty cache named by `HF_HUB_CACHE`: the library for three variants (the
//! sharded XL DiT through its index), then the `retake` binary.
//!
//! One test function: it sets the process's environment, which no other test in this binary reads.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use candle_core::{DType, Device};
use retake_engine::model::checkpoint::{Checkpoint, ModelDirs, MAIN_FILES};
use retake_engine::model::variant::Variant;
use retake_engine::model_source::{LoadProgress, ModelSource, ModelSpec};
use retake_engine::EngineError;
use tower_http::services::ServeDir;

/// The commit every served file claims to belong to.
const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

fn main_fixture() -> PathBuf {
    fixtures().join("fixtures/tiny-acestep")
}

fn xl_fixture() -> PathBuf {
    fixtures().join("fixtures-variants/tiny-acestep/acestep-v15-xl-base")
}

/// A local hub serving each `(repo, folder)` at revision `main`; stops when dropped.
struct Hub {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    fn serve(repos: &[(&str, PathBuf)]) -> Self {
        let mut router = Router::new();
        for (repo, folder) in repos {
            router = router.nest_service(&format!("/{repo}/resolve/main"), ServeDir::new(folder));
        }
        let router = router.layer(middleware::from_fn(hub_headers));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                axum::serve(listener, router).with_graceful_shutdown(shutdown).await.unwrap();
            });
        });
        Self { url, stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The headers the hub sends with every file: an `etag` per file (hf-hub names the cached blob after it) and the
/// commit the revision points at.
async fn hub_headers(request: Request, next: Next) -> Response {
    let mut hasher = DefaultHasher::new();
    request.uri().path().hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("etag", HeaderValue::from_str(&etag).unwrap());
    headers.insert("x-repo-commit", HeaderValue::from_static(COMMIT));
    response
}

/// The snapshot folder of `repo` in the hub cache `cache`.
fn snapshot(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--"))).join("snapshots").join(COMMIT)
}

/// Resolves `variant` from the hub, returning the folders and the last progress report of each downloaded file.
fn download(variant: Variant) -> (retake_engine::Result<ModelDirs>, BTreeMap<String, (u64, u64)>) {
    let mut last = BTreeMap::new();
    let spec = ModelSpec { source: ModelSource::default(), variant, dit_dir: None };
    let dirs = spec.resolve(&mut |p: LoadProgress| {
        last.insert(p.file, (p.bytes_done, p.bytes_total));
    });
    (dirs, last)
}

/// Every downloaded file ended with all its bytes, which are those of `from/<name in its folder>`.
fn assert_complete(reports: &BTreeMap<String, (u64, u64)>, sizes_from: impl Fn(&str) -> PathBuf) {
    for (file, (done, total)) in reports {
        let size = std::fs::metadata(sizes_from(file)).unwrap().len();
        assert_eq!((*done, *total), (size, size), "{file}");
    }
}

#[test]
fn variants_download_from_the_hub_named_by_hf_endpoint_into_the_cache_and_open() {
    let hub = Hub::serve(&[
        ("ACE-Step/Ace-Step1.5", main_fixture()),
        ("ACE-Step/acestep-v15-xl-base", xl_fixture()),
        // A single-file variant repo: the tiny 2B DiT at the repo root.
        ("ACE-Step/acestep-v15-sft", main_fixture().join("acestep-v15-turbo")),
    ]);
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("HF_ENDPOINT", &hub.url);
    std::env::set_var("HF_HUB_CACHE", cache.path());
    std::env::remove_var("HF_HUB_OFFLINE");

    // XL: the main files from the main repo, then the DiT's config and index, then every shard the index names.
    let (dirs, reports) = download(Variant::XlBase);
    let dirs = dirs.unwrap();
    let xl_dirs = ModelDirs {
        main: snapshot(cache.path(), "ACE-Step/Ace-Step1.5"),
        dit: snapshot(cache.path(), "ACE-Step/acestep-v15-xl-base"),
    };
    assert_eq!(dirs, xl_dirs);
    let xl = Checkpoint::open_dirs(&dirs, DType::F32, &Device::Cpu).unwrap();
    assert_eq!((xl.acestep.hidden_size, xl.acestep.is_turbo), (96, false));
    assert_eq!(xl.acestep_weights().unwrap().tensor_count(), Some(dit_tensor_count(&xl_fixture())));
    let dit_files = [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let expected: Vec<String> = MAIN_FILES
        .iter()
        .map(|f| f.to_string())
        .chain(dit_files.iter().map(|f| format!("acestep-v15-xl-base/{f}")))
        .collect();
    assert_eq!(reports.keys().cloned().collect::<std::collections::BTreeSet<_>>(), expected.into_iter().collect());
    assert_complete(&reports, |file| match file.strip_prefix("acestep-v15-xl-base/") {
        Some(name) => xl_fixture().join(name),
        None => main_fixture().join(file),
    });

    // A single-file variant: only its DiT is fetched, the main files are in the cache now.
    let (dirs, reports) = download(Variant::Sft);
    let dirs = dirs.unwrap();
    assert_eq!(dirs.dit, snapshot(cache.path(), "ACE-Step/acestep-v15-sft"));
    assert_eq!(
        reports.keys().collect::<Vec<_>>(),
        ["acestep-v15-sft/config.json", "acestep-v15-sft/model.safetensors"]
    );
    assert_eq!(Checkpoint::open_dirs(&dirs, DType::F32, &Device::Cpu).unwrap().acestep.hidden_size, 64);

    // Turbo: its DiT folder of the main repo.
    let (dirs, reports) = download(Variant::Turbo);
    assert_eq!(dirs.unwrap(), ModelDirs::turbo(&snapshot(cache.path(), "ACE-Step/Ace-Step1.5")));
    assert_eq!(
        reports.keys().collect::<Vec<_>>(),
        ["acestep-v15-turbo/config.json", "acestep-v15-turbo/model.safetensors"]
    );

    // A variant the hub does not have: the failed download and the fetch command name its repo.
    let (dirs, reports) = download(Variant::XlSft);
    let err = dirs.unwrap_err();
    let EngineError::MissingFile { hint, .. } = &err else { panic!("expected MissingFile, got {err}") };
    assert!(hint.contains("downloading `config.json` failed"), "{hint}");
    assert!(
        hint.contains("fetch them with `huggingface-cli download ACE-Step/acestep-v15-xl-sft --revision main`"),
        "{hint}"
    );
    assert!(reports.is_empty(), "{reports:?}");

    // The `retake` binary downloads a variant the same way into a fresh cache, and generates with it.
    let fresh = tempfile::tempdir().unwrap();
    let output = fresh.path().join("xl.wav");
    let run = Command::new(env!("CARGO_BIN_EXE_retake"))
        .args(["text2music", "--variant", "xl-base", "--steps", "3", "--duration", "0.5", "--prompt", "dub"])
        .arg("--output")
        .arg(&output)
        .env_remove("RETAKE_MODEL_DIR")
        .env_remove("RETAKE_VARIANT")
        .env("HF_HUB_CACHE", fresh.path().join("hub"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(snapshot(&fresh.path().join("hub"), "ACE-Step/acestep-v15-xl-base")
        .join("model-00002-of-00002.safetensors")
        .is_file());
    assert!(output.is_file());

    // Without the hub, what is cached is found offline; the rest is refused offline.
    drop(hub);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let cached = ModelSpec { source: ModelSource::default(), variant: Variant::XlBase, dit_dir: None };
    assert_eq!(cached.local_dirs(), Some(xl_dirs));
    let (dirs, _) = download(Variant::TurboShift1);
    assert!(dirs.unwrap_err().to_string().contains("HF_HUB_OFFLINE is set"));
}

/// The tensors in every shard of the sharded DiT folder `dir`.
fn dit_tensor_count(dir: &Path) -> usize {
    ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        .iter()
        .map(|shard| {
            let bytes = std::fs::read(dir.join(shard)).unwrap();
            safetensors::SafeTensors::deserialize(&bytes).unwrap().len()
        })
        .sum()
}
