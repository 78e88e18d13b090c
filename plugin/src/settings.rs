//! Engine settings: the model folder, the device, the VRAM budget, the checkpoint variant and its DiT folder, each
//! from its environment variable (`RETAKE_MODEL_DIR`, `RETAKE_DEVICE`, `RETAKE_VRAM_BUDGET`, `RETAKE_VARIANT`,
//! `RETAKE_DIT_DIR`), else from the settings file `$XDG_CONFIG_HOME/retake/settings.json` (Windows: `%APPDATA%\retake\settings.json`) that the editor
//! writes, else the default; the LoRA adapters come from the settings file only. With a server address
//! (`RETAKE_SERVER` or the key `server`, its key `ACESTEP_API_KEY` or `api_key`) jobs run on that ACE-Step 1.5 API
//! server instead of the local model (engine/src/remote). The CPU precision of the weights comes from
//! `RETAKE_CPU_PRECISION`, else the key `cpu_precision` (f32 or bf16; model/linear.rs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use retake_engine::model::linear::CpuPrecision;
use retake_engine::model::lora::LoraSpec;
use retake_engine::model::variant::Variant;
use retake_engine::model_source::{ModelSource, ModelSpec};
use retake_engine::remote::RemoteServer;
use retake_engine::runtime::{parse_size, DeviceChoice, EngineConfig};
use retake_engine::EngineError;

use crate::error::{PluginError, Result};

/// The environment variables, in the order of [`EngineSettings`]' fields.
pub const ENV_VARS: [&str; 5] =
    ["RETAKE_MODEL_DIR", "RETAKE_DEVICE", "RETAKE_VRAM_BUDGET", "RETAKE_VARIANT", "RETAKE_DIT_DIR"];
/// The environment variables of the remote server's address and API key ([`EngineSettings::server`] and
/// [`EngineSettings::api_key`]).
pub const SERVER_ENV_VARS: [&str; 2] = ["RETAKE_SERVER", "ACESTEP_API_KEY"];

/// One LoRA adapter of the settings file (engine/src/model/lora.rs: DiffSynth or kohya format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSetting {
    /// The adapter's safetensors file.
    pub file: String,
    /// Multiplier of its update (1 = as trained).
    pub scale: f64,
}

/// The settings as written: an empty field means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineSettings {
    /// A folder in the `ACE-Step/Ace-Step1.5` layout; unset: the Hugging Face cache (downloading what is
    /// missing).
    pub model_dir: String,
    /// `cpu`, `cuda` or `cuda:N`; unset: CUDA device 0 in a `cuda` build, else the CPU.
    pub device: String,
    /// Most device memory for model weights, e.g. `6GiB`; unset: no limit.
    pub vram_budget: String,
    /// The checkpoint variant (`turbo`, `base`, `xl-sft`, …; README.md, "Checkpoint variants"); unset: turbo.
    pub variant: String,
    /// The variant's DiT folder, for a DiT kept apart from the model folder; unset: found from the model.
    pub dit_dir: String,
    /// LoRA adapters merged into the DiT when the model loads, in this order.
    pub loras: Vec<LoraSetting>,
    /// An ACE-Step 1.5 API server (`retake serve` or the official one), e.g. `http://gpu-box:8001`, that runs the
    /// jobs instead of the local model (whose settings above then do not apply); unset: the local model.
    pub server: String,
    /// The server's API key; unset: none is sent.
    pub api_key: String,
    /// The linear layers' weights on the CPU, `f32` or `bf16` (half the memory); unset: bf16 where the CPU has
    /// AVX512-BF16, else f32.
    pub cpu_precision: String,
}

impl EngineSettings {
    /// The settings the environment variables hold (`var` reads one; empty values count as unset).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let [model_dir, device, vram_budget, variant, dit_dir] = ENV_VARS.map(|name| var(name).unwrap_or_default());
        let [server, api_key] = SERVER_ENV_VARS.map(|name| var(name).unwrap_or_default());
        let cpu_precision = var(CpuPrecision::ENV).unwrap_or_default();
        Self { model_dir, device, vram_budget, variant, dit_dir, loras: Vec::new(), server, api_key, cpu_precision }
    }

    /// The five fields an environment variable can set, with their variable names.
    pub fn fields(&self) -> [(&'static str, &str); 5] {
        [
            (ENV_VARS[0], &self.model_dir),
            (ENV_VARS[1], &self.device),
            (ENV_VARS[2], &self.vram_budget),
            (ENV_VARS[3], &self.variant),
            (ENV_VARS[4], &self.dit_dir),
        ]
    }

    /// These settings, with every field that `over` sets replaced by `over`'s.
    pub fn overridden_by(&self, over: &Self) -> Self {
        let pick = |over: &str, base: &str| if over.trim().is_empty() { base } else { over }.trim().to_string();
        Self {
            model_dir: pick(&over.model_dir, &self.model_dir),
            device: pick(&over.device, &self.device),
            vram_budget: pick(&over.vram_budget, &self.vram_budget),
            variant: pick(&over.variant, &self.variant),
            dit_dir: pick(&over.dit_dir, &self.dit_dir),
            loras: if over.loras.is_empty() { &self.loras } else { &over.loras }.clone(),
            server: pick(&over.server, &self.server),
            api_key: pick(&over.api_key, &self.api_key),
            cpu_precision: pick(&over.cpu_precision, &self.cpu_precision),
        }
    }

    /// Reads the settings file; a missing file holds no settings.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(PluginError::SettingsUnreadable { path: path.to_path_buf(), source }),
        };
        serde_json::from_str(&text)
            .map_err(|err| PluginError::SettingsInvalid { path: path.to_path_buf(), message: err.to_string() })
    }

    /// Writes the settings file (creating its folder) whole or not at all: a failed save leaves the previous file.
    pub fn save(&self, path: &Path) -> retake_engine::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|err| EngineError::invalid(err.to_string()))?;
        retake_engine::audio::write_bytes(path, (text + "\n").as_bytes())
    }

    /// The engine configuration these settings describe; refuses a device, budget or variant it cannot read.
    pub fn engine_config(&self) -> Result<EngineConfig> {
        let source = match self.model_dir.trim() {
            "" => ModelSource::default(),
            dir => ModelSource::Dir(PathBuf::from(dir)),
        };
        let variant = match self.variant.trim() {
            "" => Variant::default(),
            name => name.parse().map_err(PluginError::Variant)?,
        };
        let dit_dir = Some(self.dit_dir.trim()).filter(|dir| !dir.is_empty()).map(PathBuf::from);
        let model = ModelSpec { source, variant, dit_dir };
        let loras = self.loras.iter().map(LoraSetting::spec).collect::<Result<Vec<_>>>()?;
        let device = match self.device.trim() {
            "" if cfg!(feature = "cuda") => DeviceChoice::Cuda(0),
            "" => DeviceChoice::Cpu,
            text => text.parse().map_err(PluginError::Device)?,
        };
        let vram_budget = match self.vram_budget.trim() {
            "" => None,
            text => Some(parse_size(text).map_err(PluginError::VramBudget)?),
        };
        let server = self.remote_server()?;
        let cpu_precision = match self.cpu_precision.trim() {
            "" => CpuPrecision::default(),
            text => text.parse().map_err(PluginError::CpuPrecision)?,
        };
        Ok(EngineConfig { model, device, vram_budget, loras, server, cpu_precision, ..EngineConfig::default() })
    }

    /// The remote server these settings name, if any; refuses an address that is not one, and LoRA adapters (they
    /// load with the local model, which a server replaces).
    fn remote_server(&self) -> Result<Option<RemoteServer>> {
        let url = self.server.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if !self.loras.is_empty() {
            return Err(PluginError::Server(format!(
                "LoRA adapters load with the local model, and jobs go to {url}: remove the LoRA rows or clear the \
                 server address"
            )));
        }
        let api_key = Some(self.api_key.clone());
        RemoteServer::new(url, api_key).map(Some).map_err(PluginError::Server)
    }
}

impl LoraSetting {
    /// The adapter for the engine; refuses an empty file name or a scale that is not a finite number.
    fn spec(&self) -> Result<LoraSpec> {
        let file = self.file.trim();
        if file.is_empty() || !self.scale.is_finite() {
            return Err(PluginError::Lora(format!(
                "`{file}` at scale {}: give a safetensors file and a finite scale (1 = as trained), or remove the row",
                self.scale
            )));
        }
        Ok(LoraSpec { path: PathBuf::from(file), scale: self.scale })
    }
}

/// `$XDG_CONFIG_HOME/retake/settings.json` (falling back to `~/.config/retake/settings.json`); on Windows
/// `%APPDATA%\retake\settings.json` (see [`user_folders`](crate::user_folders)).
pub fn settings_file() -> Result<PathBuf> {
    let config_home = crate::user_folders::config_home().ok_or(PluginError::NoConfigFolder)?;
    Ok(config_home.join("retake").join("settings.json"))
}

/// The settings in the process environment.
pub fn env_settings() -> EngineSettings {
    EngineSettings::from_env(|name| std::env::var(name).ok())
}

/// The engine the plugin starts: environment variables over the settings file over the defaults.
pub fn engine_config() -> Result<EngineConfig> {
    let file = EngineSettings::load(&settings_file()?)?;
    file.overridden_by(&env_settings()).engine_config()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(model_dir: &str, device: &str, vram_budget: &str) -> EngineSettings {
        EngineSettings {
            model_dir: model_dir.into(),
            device: device.into(),
            vram_budget: vram_budget.into(),
            ..EngineSettings::default()
        }
    }

    #[test]
    fn environment_variables_override_the_file_field_by_field() {
        let file = settings("/models/file", "cpu", "4GiB");
        let env = EngineSettings::from_env(|name| (name == "RETAKE_DEVICE").then(|| "cuda:1".to_string()));
        assert_eq!(file.overridden_by(&env), settings("/models/file", "cuda:1", "4GiB"));
        let blank = settings(" ", "", "");
        assert_eq!(file.overridden_by(&blank), file);
    }

    #[test]
    fn settings_become_the_engine_configuration() {
        let config = settings("/models/ace", "cuda:2", "3GiB").engine_config().unwrap();
        assert_eq!(config.model, ModelSource::Dir(PathBuf::from("/models/ace")).into());
        assert_eq!((config.device, config.vram_budget), (DeviceChoice::Cuda(2), Some(3 << 30)));
    }

    #[test]
    fn unset_settings_mean_the_hugging_face_cache_the_build_device_and_no_budget() {
        let config = EngineSettings::default().engine_config().unwrap();
        let device = if cfg!(feature = "cuda") { DeviceChoice::Cuda(0) } else { DeviceChoice::Cpu };
        assert_eq!(config.model.variant, Variant::Turbo);
        assert_eq!((config.model, config.device, config.vram_budget), (ModelSpec::default(), device, None));
    }

    #[test]
    fn the_variant_comes_from_the_file_or_the_environment_and_a_wrong_one_lists_the_nine() {
        let file = EngineSettings { variant: "xl-sft".into(), ..settings("/models/ace", "", "") };
        assert_eq!(file.engine_config().unwrap().model.variant, Variant::XlSft);
        let env = EngineSettings::from_env(|name| (name == "RETAKE_VARIANT").then(|| "base".to_string()));
        let both = file.overridden_by(&env);
        assert_eq!((both.variant.as_str(), both.model_dir.as_str()), ("base", "/models/ace"));
        assert_eq!(both.engine_config().unwrap().model.variant, Variant::Base);
        let wrong = EngineSettings { variant: "xl".into(), ..EngineSettings::default() };
        let err = wrong.engine_config().unwrap_err().to_string();
        assert!(
            err.starts_with("checkpoint variant: `xl` is not an ACE-Step 1.5 variant; pick one of turbo,"),
            "{err}"
        );
        assert!(err.ends_with("xl-sft, xl-turbo"), "{err}");
    }

    #[test]
    fn the_dit_folder_and_the_loras_reach_the_engine_and_a_row_without_a_file_is_refused() {
        let style = LoraSetting { file: "/loras/style.safetensors".into(), scale: 0.5 };
        let file =
            EngineSettings { dit_dir: "/models/xl-base".into(), loras: vec![style], ..settings("/models/ace", "", "") };
        let config = file.engine_config().unwrap();
        assert_eq!(config.model.dit_dir, Some(PathBuf::from("/models/xl-base")));
        assert_eq!(config.loras, [LoraSpec { path: PathBuf::from("/loras/style.safetensors"), scale: 0.5 }]);
        let env = EngineSettings::from_env(|name| (name == "RETAKE_DIT_DIR").then(|| "/env/dit".to_string()));
        let both = file.overridden_by(&env);
        assert_eq!((both.dit_dir.as_str(), &both.loras), ("/env/dit", &file.loras));
        for (name, scale) in [(" ", 1.0), ("/loras/a.safetensors", f64::NAN)] {
            let bad = EngineSettings { loras: vec![LoraSetting { file: name.into(), scale }], ..Default::default() };
            let err = bad.engine_config().unwrap_err().to_string();
            assert!(err.starts_with("LoRA adapter `"), "{err}");
            assert!(err.ends_with("give a safetensors file and a finite scale (1 = as trained), or remove the row"));
        }
    }

    #[test]
    fn a_server_address_and_key_from_the_file_or_the_environment_send_jobs_there() {
        let file = EngineSettings { server: "http://gpu-box:8001/".into(), api_key: "k1".into(), ..Default::default() };
        let server = file.engine_config().unwrap().server.unwrap();
        assert_eq!((server.url.as_str(), server.api_key.as_deref()), ("http://gpu-box:8001", Some("k1")));
        let env = EngineSettings::from_env(|name| match name {
            "RETAKE_SERVER" => Some("https://studio.example".to_string()),
            "ACESTEP_API_KEY" => Some("k2".to_string()),
            _ => None,
        });
        let both = file.overridden_by(&env).engine_config().unwrap().server.unwrap();
        assert_eq!((both.url.as_str(), both.api_key.as_deref()), ("https://studio.example", Some("k2")));
        assert_eq!(EngineSettings::default().engine_config().unwrap().server, None);
        let keyless = EngineSettings { server: "http://h:8001".into(), ..Default::default() };
        assert_eq!(keyless.engine_config().unwrap().server.unwrap().api_key, None);
        let wrong = EngineSettings { server: "gpu-box:8001".into(), ..Default::default() };
        let err = wrong.engine_config().unwrap_err().to_string();
        assert!(err.starts_with("server: `gpu-box:8001` is not a server address; give one like http://"), "{err}");
        let lora = LoraSetting { file: "/loras/a.safetensors".into(), scale: 1.0 };
        let both = EngineSettings { loras: vec![lora], ..keyless };
        let err = both.engine_config().unwrap_err().to_string();
        assert!(err.starts_with("server: LoRA adapters load with the local model, and jobs go to http://h:8001"));
    }

    #[test]
    fn unreadable_device_or_budget_is_refused_naming_the_setting() {
        // A setting of the plugin's own: named, without the engine's "invalid input:" prefix.
        let device = settings("", "gpu", "").engine_config().unwrap_err().to_string();
        assert!(device.starts_with("engine device: `gpu` is not a device"), "{device}");
        let budget = settings("", "", "lots").engine_config().unwrap_err().to_string();
        assert!(budget.starts_with("VRAM budget: `lots` is not a size"), "{budget}");
    }

    #[test]
    fn the_cpu_precision_comes_from_the_environment_else_the_file_and_another_value_is_refused() {
        let file = EngineSettings { cpu_precision: "f32".into(), ..Default::default() };
        assert_eq!(file.engine_config().unwrap().cpu_precision, CpuPrecision::F32);
        let env = EngineSettings::from_env(|name| (name == "RETAKE_CPU_PRECISION").then(|| "bf16".to_string()));
        assert_eq!(file.overridden_by(&env).engine_config().unwrap().cpu_precision, CpuPrecision::Bf16);
        assert_eq!(EngineSettings::default().engine_config().unwrap().cpu_precision, CpuPrecision::default());
        let wrong = EngineSettings { cpu_precision: "fp8".into(), ..Default::default() };
        let err = wrong.engine_config().unwrap_err().to_string();
        assert_eq!(err, "CPU precision: `fp8` is not a CPU precision; use f32 or bf16");
    }

    #[test]
    fn saved_settings_load_back_and_a_missing_file_holds_none() {
        let dir = std::env::temp_dir().join(format!("retake-settings-test-{}", std::process::id()));
        let path = dir.join("retake").join("settings.json");
        assert_eq!(EngineSettings::load(&path).unwrap(), EngineSettings::default());
        let saved = settings("/models/ace", "cuda", "6GiB");
        saved.save(&path).unwrap();
        assert_eq!(EngineSettings::load(&path).unwrap(), saved);
        std::fs::write(&path, "{ not json").unwrap();
        let err = EngineSettings::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("the settings file {} is not valid", path.display())), "{err}");
        assert!(err.ends_with("save the settings again in the editor"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
