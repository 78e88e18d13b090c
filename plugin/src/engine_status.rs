//! The editor's engine status line: what the engine is doing, on which device, with which model and
//! VRAM budget, how many Retake instances share it, and how much of the model is resident.

use retake_engine::model_source::ModelSource;
use retake_engine::residency::human_bytes;
use retake_engine::runtime::{EngineConfig, EngineStats};

/// `engine: <state> · <device> · <variant> from <where> · budget <size> · shared by <n> instances · resident <now>
/// (peak <most>)`; the sharing part only when other instances use the engine too (src/engine_share.rs), the resident
/// part only once a job has run. With a remote server: `engine: <state> · server <url>`.
pub fn status_line(state: &str, config: &EngineConfig, stats: Option<&EngineStats>) -> String {
    if let Some(server) = &config.server {
        // Jobs run on the server (engine/src/remote): the local model, device and budget do not apply.
        return format!("engine: {state} · server {}", server.url);
    }
    let device = config.device;
    let variant = config.model.variant;
    let source = match &config.model.source {
        ModelSource::Dir(root) => root.display().to_string(),
        ModelSource::HuggingFace { repo, revision } => format!("{repo}@{revision} (Hugging Face cache)"),
    };
    let budget = config.vram_budget.map_or_else(|| "no limit".to_string(), human_bytes);
    let mut line = format!("engine: {state} · {device} · {variant} from {source} · budget {budget}");
    if let Some(clients) = stats.map(|stats| stats.clients).filter(|&clients| clients > 1) {
        line += &format!(" · shared by {clients} instances");
    }
    if let Some(residency) = stats.map(|stats| stats.residency).filter(|residency| residency.peak_bytes > 0) {
        line += &format!(
            " · resident {} (peak {} with activations)",
            human_bytes(residency.resident_bytes),
            human_bytes(residency.peak_bytes)
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use retake_engine::residency::ResidencyStats;

    use retake_engine::model::variant::Variant;
    use retake_engine::model_source::ModelSpec;
    use retake_engine::runtime::DeviceChoice;

    use super::*;

    #[test]
    fn with_a_server_the_line_names_it_instead_of_the_local_model() {
        let server = retake_engine::remote::RemoteServer::new("http://gpu-box:8001/", None).unwrap();
        let config = EngineConfig { server: Some(server), ..EngineConfig::default() };
        assert_eq!(status_line("running", &config, None), "engine: running · server http://gpu-box:8001");
    }

    #[test]
    fn the_line_names_state_device_model_and_budget_and_residency_once_known() {
        let config = EngineConfig {
            model: ModelSpec { variant: Variant::XlSft, ..ModelSource::Dir(PathBuf::from("/models/ace")).into() },
            device: DeviceChoice::Cuda(1),
            vram_budget: Some(6 << 30),
            ..EngineConfig::default()
        };
        assert_eq!(
            status_line("ready", &config, None),
            "engine: ready · cuda:1 · xl-sft from /models/ace · budget 6.00 GiB"
        );
        let stats = EngineStats {
            residency: ResidencyStats { resident_bytes: 3 << 30, peak_bytes: 5 << 30, ..ResidencyStats::default() },
            clients: 1,
            ..EngineStats::default()
        };
        assert_eq!(
            status_line("ready", &config, Some(&stats)),
            "engine: ready · cuda:1 · xl-sft from /models/ace · budget 6.00 GiB · resident 3.00 GiB (peak 5.00 GiB \
             with activations)"
        );
        let shared = EngineStats { clients: 3, ..stats };
        assert_eq!(
            status_line("ready", &config, Some(&shared)),
            "engine: ready · cuda:1 · xl-sft from /models/ace · budget 6.00 GiB · shared by 3 instances · resident \
             3.00 GiB (peak 5.00 GiB with activations)"
        );
        let default = EngineConfig::default();
        assert_eq!(
            status_line("running", &default, None),
            "engine: running · cpu · turbo from ACE-Step/Ace-Step1.5@main (Hugging Face cache) · budget no limit"
        );
    }
}
