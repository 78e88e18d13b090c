//! The egui editor: captured timeline with region and takes, prompt and lyrics, job controls, progress, the
//! takes list and status lines. It only reads shared state and sends commands, so it never waits
//! on a job.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use egui::{Color32, ProgressBar, Rect, RichText, Sense, Stroke, TextEdit, Ui};
use nice_plug_egui::widgets::ParamSlider;
use nih_plug::context::gui::GuiContext;
use nih_plug::prelude::ParamSetter;

use crate::error::PluginError;
use crate::params::{Monitor, Reference, RetakeParams, TaskMode, CAPTURE_MINUTES, LANGUAGES};
use crate::region::select_region;
use crate::reveal;
use crate::settings::{self, EngineSettings, LoraSetting};
use crate::shared::{JobPhase, Shared};
use crate::worker::Command;
use retake_engine::model::variant::Variant;

/// How often the waveform overview is recomputed.
const OVERVIEW_REFRESH: Duration = Duration::from_millis(250);
/// How often the editor repaints while open (progress, playhead).
const REPAINT_INTERVAL: Duration = Duration::from_millis(50);
const WAVEFORM_HEIGHT: f32 = 110.0;
const ERROR_COLOR: Color32 = Color32::from_rgb(230, 90, 80);
const NOTICE_COLOR: Color32 = Color32::from_rgb(230, 180, 70);
const REGION_COLOR: Color32 = Color32::from_rgba_premultiplied(60, 90, 160, 70);
const TAKE_COLOR: Color32 = Color32::from_rgb(90, 170, 110);
const SELECTED_TAKE_COLOR: Color32 = Color32::from_rgb(140, 230, 150);

/// Where timeline positions lie on the waveform: `span` (host timeline samples) drawn across `left..left + width`.
#[derive(Debug, Clone, PartialEq)]
struct TimelineView {
    span: Range<i64>,
    left: f32,
    width: f32,
}

impl TimelineView {
    /// The x coordinate of timeline sample `t`.
    fn x_of(&self, t: i64) -> f32 {
        self.left + ((t - self.span.start) as f32 / (self.span.end - self.span.start).max(1) as f32) * self.width
    }

    /// The timeline sample under `x`, clamped to the span.
    fn time_at(&self, x: f32) -> i64 {
        let fraction = ((x - self.left) / self.width.max(1.0)).clamp(0.0, 1.0) as f64;
        self.span.start + (fraction * (self.span.end - self.span.start) as f64).round() as i64
    }
}

/// The region (start, end) in seconds that a drag from timeline sample `from` to `to` marks at `rate`: either
/// direction, never before the timeline's start.
fn dragged_region(from: i64, to: i64, rate: u32) -> (f32, f32) {
    let seconds = |t: i64| (t.max(0) as f64 / f64::from(rate)) as f32;
    (seconds(from.min(to)), seconds(from.max(to)))
}

/// The waveform picture and the timeline span it shows.
struct Overview {
    span: Range<i64>,
    peaks: Vec<Option<f32>>,
    computed: Instant,
}

/// The engine settings form: the settings file's content being edited, and the outcome of the last save.
struct SettingsForm {
    path: std::result::Result<PathBuf, Arc<PluginError>>,
    draft: EngineSettings,
    /// The settings file's content as last read or saved.
    saved: EngineSettings,
    note: Option<std::result::Result<String, String>>,
}

impl SettingsForm {
    /// The settings file as it is now (a file that cannot be read is reported, and the form starts empty).
    fn load() -> Self {
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
    fn variant(&self) -> Variant {
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
}

/// Retake's editor app.
pub struct RetakeEditor {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    gui: Option<GuiContext>,
    overview: Option<Overview>,
    settings: SettingsForm,
    /// What the last "File" button did: the path it copied, or why it could not show the file.
    file_note: Option<std::result::Result<String, String>>,
    /// The timeline sample where a drag on the waveform started, while one is under way.
    drag_from: Option<i64>,
}

impl RetakeEditor {
    /// An editor showing `shared` and sending commands to the job worker.
    pub fn new(shared: Arc<Shared>, commands: Sender<Command>) -> Self {
        Self {
            shared,
            commands,
            gui: None,
            overview: None,
            settings: SettingsForm::load(),
            file_note: None,
            drag_from: None,
        }
    }

    fn send(&self, command: Command) {
        // The worker only goes away with the plugin, which outlives its editor.
        let _ = self.commands.send(command);
    }

    /// The timeline span to draw: everything captured, the region and every take.
    fn visible_span(&self) -> Option<Range<i64>> {
        let capture = self.shared.capture()?;
        let mut span = capture.extent().unwrap_or(0..0);
        let rate = capture.sample_rate();
        let state = self.shared.params.takes.read();
        for take in &state.takes {
            let region = take.region.at_rate(rate);
            span = span.start.min(region.start)..span.end.max(region.end);
        }
        (span.start < span.end).then_some(span)
    }

    fn refresh_overview(&mut self, buckets: usize) {
        let stale = self
            .overview
            .as_ref()
            .is_none_or(|overview| overview.computed.elapsed() > OVERVIEW_REFRESH || overview.peaks.len() != buckets);
        if !stale {
            return;
        }
        self.overview = self.visible_span().zip(self.shared.capture()).map(|(span, capture)| Overview {
            peaks: capture.overview(span.clone(), buckets),
            span,
            computed: Instant::now(),
        });
    }

    /// The captured timeline with the region, the takes and the playhead; dragging across it marks the region
    /// (it sets `start` and `end` and turns `follow_loop` off, so the marked region is the one used).
    fn waveform(&mut self, setter: &ParamSetter, ui: &mut Ui) {
        let width = ui.available_width().max(100.0);
        let (rect, response) = ui.allocate_exact_size(egui::vec2(width, WAVEFORM_HEIGHT), Sense::drag());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 2.0, Color32::from_gray(24));
        self.refresh_overview(width as usize);
        let Some(overview) = &self.overview else {
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "Play the song: Retake captures what passes through it.",
                egui::FontId::proportional(14.0),
                Color32::GRAY,
            );
            return;
        };
        let span = overview.span.clone();
        let view = TimelineView { span: span.clone(), left: rect.left(), width: rect.width() };
        let x_of = |t: i64| view.x_of(t);
        let rate = self.shared.capture().map_or(48_000, |capture| capture.sample_rate());
        let params = &self.shared.params;
        let transport = self.shared.transport.snapshot();
        if let Ok(region) = select_region(
            params.follow_loop.value(),
            transport.loop_range,
            params.start.value(),
            params.end.value(),
            rate,
        ) {
            let area = Rect::from_x_y_ranges(x_of(region.start)..=x_of(region.end), rect.y_range());
            painter.rect_filled(area.intersect(rect), 0.0, REGION_COLOR);
        }
        let mid = rect.center().y;
        for (i, peak) in overview.peaks.iter().enumerate() {
            if let Some(peak) = peak {
                let x = rect.left() + i as f32 + 0.5;
                let half = peak.min(1.0) * (WAVEFORM_HEIGHT * 0.45);
                painter.line_segment(
                    [egui::pos2(x, mid - half), egui::pos2(x, mid + half)],
                    Stroke::new(1.0, Color32::LIGHT_GRAY),
                );
            }
        }
        let state = params.takes.read();
        for take in &state.takes {
            let region = take.region.at_rate(rate);
            let color = if state.selected == Some(take.id) { SELECTED_TAKE_COLOR } else { TAKE_COLOR };
            let bar =
                Rect::from_x_y_ranges(x_of(region.start)..=x_of(region.end), rect.bottom() - 6.0..=rect.bottom() - 2.0);
            painter.rect_filled(bar.intersect(rect), 1.0, color);
        }
        if let Some(position) = transport.position.filter(|position| span.contains(position)) {
            let x = x_of(position);
            painter.line_segment(
                [egui::pos2(x, rect.top()), egui::pos2(x, rect.bottom())],
                Stroke::new(1.0, Color32::WHITE),
            );
        }
        drop(state);
        self.drag_region(&response, &view, rate, setter);
    }

    /// Turns a drag on the waveform into the region parameters, as one gesture per parameter for the host.
    fn drag_region(&mut self, response: &egui::Response, view: &TimelineView, rate: u32, setter: &ParamSetter) {
        let params = &self.shared.params;
        let pointer = response.interact_pointer_pos().map(|pos| view.time_at(pos.x));
        if response.drag_started() {
            self.drag_from = pointer;
            setter.begin_set_parameter(&params.follow_loop);
            setter.set_parameter(&params.follow_loop, false);
            setter.end_set_parameter(&params.follow_loop);
            setter.begin_set_parameter(&params.start);
            setter.begin_set_parameter(&params.end);
        }
        if let (Some(from), Some(to)) = (self.drag_from, pointer) {
            let (start, end) = dragged_region(from, to, rate);
            setter.set_parameter(&params.start, start);
            setter.set_parameter(&params.end, end);
        }
        if response.drag_stopped() && self.drag_from.take().is_some() {
            setter.end_set_parameter(&params.start);
            setter.end_set_parameter(&params.end);
        }
    }

    fn text_fields(&self, ui: &mut Ui) {
        let params = &self.shared.params;
        ui.label("Prompt (style caption)");
        let mut prompt = params.prompt.read().clone();
        if ui.add(TextEdit::multiline(&mut prompt).desired_rows(2).desired_width(f32::INFINITY)).changed() {
            *params.prompt.write() = prompt;
        }
        ui.label("Lyrics (empty = instrumental)");
        let mut lyrics = params.lyrics.read().clone();
        if ui.add(TextEdit::multiline(&mut lyrics).desired_rows(3).desired_width(f32::INFINITY)).changed() {
            *params.lyrics.write() = lyrics;
        }
    }

    fn controls(params: &RetakeParams, setter: &ParamSetter, ui: &mut Ui) {
        egui::Grid::new("retake-params").num_columns(4).spacing([12.0, 4.0]).show(ui, |ui| {
            ui.label("Mode");
            ui.add(ParamSlider::for_param(&params.mode, setter));
            ui.label("Strength");
            ui.add(ParamSlider::for_param(&params.strength, setter));
            ui.end_row();
            ui.label("Seed");
            ui.add(ParamSlider::for_param(&params.seed, setter));
            ui.label("Key");
            ui.add(ParamSlider::for_param(&params.key, setter));
            ui.end_row();
            ui.label("Monitor");
            ui.add(ParamSlider::for_param(&params.monitor, setter));
            ui.label("Crossfade");
            ui.add(ParamSlider::for_param(&params.xfade_ms, setter));
            ui.end_row();
            ui.label("Follow loop");
            ui.add(ParamSlider::for_param(&params.follow_loop, setter));
            ui.label("");
            ui.label("");
            ui.end_row();
            ui.label("Start");
            ui.add(ParamSlider::for_param(&params.start, setter));
            ui.label("End");
            ui.add(ParamSlider::for_param(&params.end, setter));
            ui.end_row();
        });
    }

    /// Sampling controls: variant defaults, guidance, steps, shift, cover noise, the vocal language and the
    /// timbre reference.
    fn sampling(&self, setter: &ParamSetter, ui: &mut Ui) {
        let params = &self.shared.params;
        let variant = self.settings.variant();
        let defaults = variant.defaults();
        let own = !params.variant_defaults.value();
        egui::Grid::new("retake-sampling").num_columns(4).spacing([12.0, 4.0]).show(ui, |ui| {
            ui.label("Variant defaults");
            ui.add(ParamSlider::for_param(&params.variant_defaults, setter)).on_hover_text(format!(
                "On: the {variant} variant's {} steps, shift {:.1}, guidance {:.1}; off: the controls below",
                defaults.steps, defaults.shift, defaults.cfg_scale
            ));
            ui.label("Guidance");
            let hint = if variant.is_turbo() {
                format!("{variant} is a turbo variant: it runs without guidance (1); pick a guided variant to use it")
            } else {
                "turn Variant defaults off to set it".to_string()
            };
            ui.add_enabled(own && !variant.is_turbo(), ParamSlider::for_param(&params.guidance, setter))
                .on_disabled_hover_text(hint);
            ui.end_row();
            ui.label("Steps");
            ui.add_enabled(own, ParamSlider::for_param(&params.steps, setter))
                .on_disabled_hover_text(format!("{} (the variant's)", defaults.steps));
            ui.label("Shift");
            ui.add_enabled(own, ParamSlider::for_param(&params.shift, setter))
                .on_disabled_hover_text(format!("{:.1} (the variant's)", defaults.shift));
            ui.end_row();
            ui.label("Cover noise");
            ui.add_enabled(params.mode.value() == TaskMode::Cover, ParamSlider::for_param(&params.cover_noise, setter))
                .on_disabled_hover_text("used in Cover mode");
            ui.label("Vocal language");
            let mut language = params.language.read().clone();
            egui::ComboBox::from_id_salt("retake-language").selected_text(language.as_str()).show_ui(ui, |ui| {
                for code in LANGUAGES {
                    ui.selectable_value(&mut language, code.to_string(), code);
                }
            });
            if language != *params.language.read() {
                *params.language.write() = language;
            }
            ui.end_row();
        });
        self.reference_row(ui);
    }

    /// The timbre reference: none, one of this instance's takes, or a file path.
    fn reference_row(&self, ui: &mut Ui) {
        let params = &self.shared.params;
        let mut reference = params.reference.read().clone();
        let takes: Vec<u64> = params.takes.read().takes.iter().map(|take| take.id).collect();
        ui.horizontal(|ui| {
            ui.label("Timbre reference");
            let shown = match &reference {
                Reference::None => "none (default timbre)".to_string(),
                Reference::Take(id) => format!("take #{id}"),
                Reference::File(_) => "file".to_string(),
            };
            egui::ComboBox::from_id_salt("retake-reference").selected_text(shown).show_ui(ui, |ui| {
                ui.selectable_value(&mut reference, Reference::None, "none (default timbre)");
                for id in takes.iter().rev() {
                    ui.selectable_value(&mut reference, Reference::Take(*id), format!("take #{id}"));
                }
                if ui.selectable_label(matches!(reference, Reference::File(_)), "file").clicked() {
                    reference = Reference::File(PathBuf::new());
                }
            });
            if let Reference::File(path) = &mut reference {
                let mut text = path.display().to_string();
                let edit = TextEdit::singleline(&mut text).hint_text("a WAV, AIFF, FLAC, MP3 or Ogg file, 1 s or more");
                if ui.add(edit.desired_width(360.0)).changed() {
                    *path = PathBuf::from(text);
                }
            }
        });
        if reference != *params.reference.read() {
            *params.reference.write() = reference;
        }
    }

    fn job_row(&self, ui: &mut Ui) {
        let phase = self.shared.board.lock().job.clone();
        ui.horizontal(|ui| {
            let idle = phase == JobPhase::Idle;
            if ui.add_enabled(idle, egui::Button::new(RichText::new("Generate").strong())).clicked() {
                self.send(Command::Generate);
            }
            if ui.add_enabled(!idle, egui::Button::new("Cancel")).clicked() {
                self.send(Command::Cancel);
            }
            let (label, fraction) = match &phase {
                JobPhase::Idle => ("idle".to_string(), 0.0),
                JobPhase::Running { label, fraction } => (label.clone(), *fraction),
            };
            ui.add(ProgressBar::new(fraction).text(label));
        });
    }

    fn takes_list(&mut self, setter: &ParamSetter, ui: &mut Ui) {
        let params = &self.shared.params;
        let state = params.takes.read().clone();
        let problems = self.shared.board.lock().take_problems.clone();
        let mut file_note = None;
        ui.horizontal(|ui| {
            ui.heading("Takes");
            if ui.selectable_label(state.selected.is_none(), "none (original)").clicked() {
                self.send(Command::Select(None));
            }
        });
        egui::ScrollArea::vertical().max_height(170.0).show(ui, |ui| {
            for take in state.takes.iter().rev() {
                ui.horizontal(|ui| {
                    let (start, end) = take.region.seconds();
                    let text = format!("#{} {:.2}–{:.2} s  seed {}  {}", take.id, start, end, take.seed, take.summary);
                    if ui.selectable_label(state.selected == Some(take.id), text).clicked() {
                        self.send(Command::Select(Some(take.id)));
                    }
                    if ui.button("Audition").clicked() {
                        self.send(Command::Select(Some(take.id)));
                        setter.begin_set_parameter(&params.monitor);
                        setter.set_parameter(&params.monitor, Monitor::Take);
                        setter.end_set_parameter(&params.monitor);
                    }
                    let file = &take.host_file.path;
                    let hover = format!(
                        "Copy the path of the take's {} Hz WAV and show it in the file manager, to drag or paste \
                         into the host. 48 kHz file: {}",
                        take.host_file.sample_rate,
                        take.model_file.path.display()
                    );
                    if ui.button("File").on_hover_text(hover).clicked() {
                        ui.ctx().copy_text(file.display().to_string());
                        file_note = Some(match reveal::reveal(file) {
                            Ok(()) => Ok(format!("copied {}", file.display())),
                            Err(err) => Err(format!("copied {}, but cannot show it: {err}", file.display())),
                        });
                    }
                    if ui.button("Delete").clicked() {
                        self.send(Command::Delete(take.id));
                    }
                });
                if let Some(problem) = problems.get(&take.id) {
                    ui.colored_label(ERROR_COLOR, format!("  cannot play: {problem}"));
                }
            }
        });
        if file_note.is_some() {
            self.file_note = file_note;
        }
        show_note(ui, self.file_note.as_ref());
    }

    fn status_lines(&self, ui: &mut Ui) {
        let board = self.shared.board.lock().clone();
        ui.label(RichText::new(&board.engine).small());
        if let Some(capture) = self.shared.capture() {
            let used = format!(
                "capture: {:.0}% of {:.0} min used at {} Hz",
                capture.used_fraction() * 100.0,
                capture.capacity_seconds() / 60.0,
                capture.sample_rate()
            );
            ui.label(RichText::new(used).small());
            if capture.is_full() {
                ui.colored_label(
                    NOTICE_COLOR,
                    "Capture memory is full: new parts of the timeline are not recorded. Raise the capture size \
                     (applies when the host next activates Retake).",
                );
            }
        }
        if self.shared.audio_fault() {
            ui.colored_label(ERROR_COLOR, "Audio processing hit an internal error and now passes audio through.");
        }
        if let Some(error) = &board.error {
            ui.colored_label(ERROR_COLOR, error);
        }
    }

    /// Model folder, device, VRAM budget, variant, DiT folder and LoRA adapters, saved to the settings file;
    /// environment variables win over it.
    fn engine_settings(&mut self, ui: &mut Ui) {
        let env = settings::env_settings();
        let form = &mut self.settings;
        let mut save = false;
        egui::CollapsingHeader::new("Engine settings").show(ui, |ui| {
            let draft = &mut form.draft;
            let [model_dir, device, budget, variant, dit_dir] = env.fields();
            egui::Grid::new("retake-engine-settings").num_columns(3).spacing([12.0, 4.0]).show(ui, |ui| {
                let overridden = |ui: &mut Ui, (var, set): (&str, &str)| {
                    if set.is_empty() {
                        ui.label("");
                    } else {
                        ui.colored_label(NOTICE_COLOR, format!("{var}={set} overrides this"));
                    }
                    ui.end_row();
                };
                let rows = [
                    ("Model folder", "empty: the Hugging Face cache", &mut draft.model_dir, model_dir),
                    ("Device", "cpu, cuda or cuda:N", &mut draft.device, device),
                    ("VRAM budget", "e.g. 6GiB; empty: no limit", &mut draft.vram_budget, budget),
                ];
                for (label, hint, value, env) in rows {
                    ui.label(label);
                    ui.add(TextEdit::singleline(value).hint_text(hint).desired_width(360.0));
                    overridden(ui, env);
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
        if save && form.save() {
            self.send(Command::ReloadSettings);
        }
    }

    fn capture_size(&self, ui: &mut Ui) {
        let minutes = &self.shared.params.capture_minutes;
        let mut value = minutes.load(std::sync::atomic::Ordering::Relaxed);
        ui.horizontal(|ui| {
            ui.label("Capture size (minutes, applies on next activation)");
            if ui.add(egui::DragValue::new(&mut value).range(CAPTURE_MINUTES)).changed() {
                minutes.store(value, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
}

/// The outcome of an editor action: a small selectable line (it may hold a path to copy), or the error in red.
fn show_note(ui: &mut Ui, note: Option<&std::result::Result<String, String>>) {
    match note {
        Some(Ok(note)) => {
            ui.add(egui::Label::new(RichText::new(note).small()).selectable(true));
        }
        Some(Err(err)) => {
            ui.colored_label(ERROR_COLOR, err);
        }
        None => {}
    }
}

impl nice_plug_egui::NiceEguiApp for RetakeEditor {
    fn build(
        &mut self,
        _egui_ctx: egui::Context,
        gui_ctx: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.gui = Some(gui_ctx);
        Ok(())
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut nice_plug_egui::Frame) {
        ui.ctx().request_repaint_after(REPAINT_INTERVAL);
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Retake");
            self.waveform(&setter, ui);
            ui.separator();
            self.text_fields(ui);
            ui.separator();
            Self::controls(&self.shared.params, &setter, ui);
            self.sampling(&setter, ui);
            ui.separator();
            self.job_row(ui);
            ui.separator();
            self.takes_list(&setter, ui);
            ui.separator();
            self.capture_size(ui);
            self.engine_settings(ui);
            self.status_lines(ui);
        });
    }

    fn editor_closed(&mut self) {
        self.gui = None;
        self.overview = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waveform_positions_and_timeline_samples_map_both_ways() {
        let view = TimelineView { span: 48_000..144_000, left: 10.0, width: 960.0 };
        assert_eq!(view.x_of(48_000), 10.0);
        assert_eq!(view.x_of(96_000), 490.0);
        assert_eq!(view.time_at(490.0), 96_000);
        assert_eq!(view.time_at(970.0), 144_000);
        // Past the edges the time stays within the span.
        assert_eq!(view.time_at(-50.0), 48_000);
        assert_eq!(view.time_at(5_000.0), 144_000);
    }

    #[test]
    fn a_drag_marks_the_region_in_seconds_in_either_direction() {
        assert_eq!(dragged_region(96_000, 240_000, 48_000), (2.0, 5.0));
        assert_eq!(dragged_region(240_000, 96_000, 48_000), (2.0, 5.0));
        // A timeline that starts before 0 (pre-roll) marks from 0.
        assert_eq!(dragged_region(-4_800, 44_100, 44_100), (0.0, 1.0));
    }
}
