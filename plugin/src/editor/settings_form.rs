//! The engine settings form: the ACE-Step API server and its key (engine/src/remote), model folder, device, VRAM
//! budget, variant, DiT folder and LoRA adapters, saved to the settings file (environment variables win over it).

use std::path::PathBuf;
use std::sync::Arc;

use egui::{TextEdit, Ui};

use super::progress::ERROR_COLOR;
use super::NOTICE_COLOR;
use crate::error::PluginError;
use crate::settings::{self, EngineSettings, LoraSetting, SERVER_ENV_VARS};
use retake_engine::model::variant::Variant;

/// The engine settings form: the settings file's content being edited, and the outcome of the last save.
pub struct SettingsForm {
    path: std::result::Result<PathBuf, Arc<PluginError>>,
    draft: EngineSettings,
    /// The settings file's content as last read or saved.
    saved: EngineSettings,
    note: Option<std::result::Result<String, String>>,
}

impl SettingsForm {
    /// The settings file as it is now (a file that cannot be read is reported, and the form starts empty).
    pub fn load() -> Self {
        let path = settings::settings_file().map_err(Arc::new);
        let loaded = path
            .as_ref()
            .map_err(ToString::to_string)
            .and_then(|path| EngineSettings::load(path).map_err(|err| err.to_string()));
        let (draft, note) = match loaded {
            Ok(draft) => (draft, None),
            Err(err) => (EngineSettings::default(), Some(Err(err))),
        };
        Self { path, saved: draft.clone(), draft, note }
    }

    /// The variant the next engine runs: the environment's, else the saved settings', else turbo.
    pub fn variant(&self) -> Variant {
        self.saved.overridden_by(&settings::env_settings()).variant.parse().unwrap_or_default()
    }

    /// Checks the draft and writes it to the settings file; returns whether it was saved.
    fn save(&mut self) -> bool {
        let saved = self.draft.engine_config().and_then(|_| match &self.path {
            Ok(path) => self.draft.save(path).map(|()| path.clone()).map_err(PluginError::from),
            Err(err) => Err(PluginError::Setup(err.clone())),
        });
        if saved.is_ok() {
            self.saved = self.draft.clone();
        }
        self.note = Some(
            saved
                .as_ref()
                .map(|path| format!("saved to {}; applies from the next Generate", path.display()))
                .map_err(|err| err.to_string()),
        );
        saved.is_ok()
    }

    /// Model folder, device, VRAM budget, variant, DiT folder and LoRA adapters, saved to the settings file;
    /// environment variables win over it.
    /// Returns whether the settings were saved (the worker then reads them again).
    pub fn show(&mut self, ui: &mut Ui) -> bool {
        let env = settings::env_settings();
        let form = self;
        let mut save = false;
        egui::CollapsingHeader::new("Engine settings").show(ui, |ui| {
            let draft = &mut form.draft;
            let [model_dir, device, budget, variant, dit_dir] = env.fields();
            let env_key_set = !env.api_key.trim().is_empty();
            egui::Grid::new("retake-engine-settings").num_columns(3).spacing([12.0, 4.0]).show(ui, |ui| {
                let overridden = |ui: &mut Ui, (var, set): (&str, &str)| {
                    if set.is_empty() {
                        ui.label("");
                    } else {
                        ui.colored_label(NOTICE_COLOR, format!("{var}={set} overrides this"));
                    }
                    ui.end_row();
                };
                let server_hint = "empty: the local model; e.g. http://gpu-box:8001 (retake serve or ACE-Step's API)";
                let rows = [
                    ("Server", server_hint, &mut draft.server, (SERVER_ENV_VARS[0], env.server.as_str())),
                    ("Model folder", "empty: the Hugging Face cache", &mut draft.model_dir, model_dir),
                    ("Device", "cpu, cuda or cuda:N", &mut draft.device, device),
                    ("VRAM budget", "e.g. 6GiB; empty: no limit", &mut draft.vram_budget, budget),
                ];
                for (index, (label, hint, value, env)) in rows.into_iter().enumerate() {
                    ui.label(label);
                    ui.add(TextEdit::singleline(value).hint_text(hint).desired_width(360.0));
                    overridden(ui, env);
                    if index == 0 {
                        // The key is a secret: typed hidden, and an environment variable's value is not shown.
                        ui.label("API key");
                        let key = TextEdit::singleline(&mut draft.api_key).password(true);
                        ui.add(key.hint_text("the server's key; empty: none is sent").desired_width(360.0));
                        let set = if env_key_set { "(hidden)" } else { "" };
                        overridden(ui, (SERVER_ENV_VARS[1], set));
                    }
                }
                ui.label("Variant");
                let shown =
                    if draft.variant.trim().is_empty() { Variant::default().name() } else { draft.variant.trim() };
                egui::ComboBox::from_id_salt("retake-variant").selected_text(shown.to_string()).show_ui(ui, |ui| {
                    for choice in Variant::ALL {
                        ui.selectable_value(&mut draft.variant, choice.name().to_string(), choice.name());
                    }
                });
                overridden(ui, variant);
                ui.label("DiT folder");
                let hint = "empty: the variant's folder beside the model, or its Hugging Face repo";
                ui.add(TextEdit::singleline(&mut draft.dit_dir).hint_text(hint).desired_width(360.0));
                overridden(ui, dit_dir);
            });
            ui.label("LoRA adapters (DiffSynth or kohya safetensors, merged into the DiT at load, in this order)");
            let mut removed = None;
            for (index, lora) in draft.loras.iter_mut().enumerate() {
                ui.horizontal(|ui| {
                    let hint = "path of a .safetensors adapter";
                    ui.add(TextEdit::singleline(&mut lora.file).hint_text(hint).desired_width(300.0));
                    ui.label("scale");
                    ui.add(egui::DragValue::new(&mut lora.scale).speed(0.01).range(-4.0..=4.0));
                    if ui.button("Remove").clicked() {
                        removed = Some(index);
                    }
                });
            }
            if let Some(index) = removed {
                draft.loras.remove(index);
            }
            if ui.button("Add LoRA").clicked() {
                draft.loras.push(LoraSetting { file: String::new(), scale: 1.0 });
            }
            save = ui.button("Save").clicked();
            show_note(ui, form.note.as_ref());
        });
        save && form.save()
    }
}

/// The outcome of an editor action: a small selectable line (it may hold a path to copy), or the error in red.
pub fn show_note(ui: &mut Ui, note: Option<&std::result::Result<String, String>>) {
    match note {
        Some(Ok(note)) => {
            ui.add(egui::Label::new(egui::RichText::new(note).small()).selectable(true));
        }
        Some(Err(err)) => {
            ui.colored_label(ERROR_COLOR, err);
        }
        None => {}
    }
}
