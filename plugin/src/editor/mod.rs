//! The egui editor: the captured timeline with the region ([`timeline`]), the takes as lanes under it
//! ([`lanes`]), the controls ([`controls`]), the job row with progress ([`progress`]), and the engine settings
//! ([`settings_form`]). It only reads shared state and sends commands, so it never waits on a job; waveform
//! overviews come from a thread of its own ([`peaks`]).

mod controls;
mod lanes;
mod peaks;
mod progress;
mod settings_form;
mod timeline;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use egui::{Color32, Key, Rect, RichText, Ui, UiBuilder};
use nice_plug_egui::resizable_window::ResizableWindow;
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, EguiNiceSettings, RepaintNotifier};
use nih_plug::context::gui::GuiContext;
use nih_plug::editor::dpi::LogicalSize;
use nih_plug::editor::ResizeHint;
use nih_plug::prelude::ParamSetter;

use crate::params::{Monitor, CAPTURE_MINUTES};
use crate::region::select_region;
use crate::shared::{JobPhase, Shared};
use crate::takes;
use crate::worker::Command;
use controls::set_param;
use lanes::{Lane, LaneAction, Lanes};
use peaks::Overviews;
use progress::{JobAction, ERROR_COLOR};
use settings_form::{show_note, SettingsForm};
use timeline::{format_seconds, Timeline, TimelineScene, TimelineView};

/// How often the editor repaints while open (progress, playhead).
const REPAINT_INTERVAL: Duration = Duration::from_millis(50);
/// The editor's size when it first opens, in logical points (the host's HiDPI scale multiplies it).
const DEFAULT_SIZE: (f32, f32) = (980.0, 780.0);
/// The smallest size the window can be resized to, in logical points.
const MIN_SIZE: (f32, f32) = (760.0, 560.0);
/// Width of the column of lane headers left of the timeline and the lanes.
const GUTTER: f32 = 210.0;
const TIMELINE_HEIGHT: f32 = 130.0;
pub const NOTICE_COLOR: Color32 = Color32::from_rgb(230, 180, 70);

/// Retake's editor: resizable down to [`MIN_SIZE`], at the host's HiDPI scale.
pub fn create_editor(shared: Arc<Shared>, commands: Sender<Command>) -> Option<EguiEditor<RetakeEditor>> {
    let min = LogicalSize::new(MIN_SIZE.0, MIN_SIZE.1);
    create_egui_editor(
        EguiEditorState::from_size(LogicalSize::new(DEFAULT_SIZE.0, DEFAULT_SIZE.1), 1.0),
        RepaintNotifier::new(),
        EguiNiceSettings::new().with_tile("Retake").with_resize_hint(ResizeHint::RESIZABLE.with_min_logical_size(min)),
        RetakeEditor::new(shared, commands),
    )
}

/// A keyboard shortcut of the editor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shortcut {
    /// Space: audition the original (A) or the take (B).
    ToggleAb,
    /// G: generate.
    Generate,
    /// Esc: cancel the job.
    Cancel,
}

/// The shortcut pressed, if the editor has the keyboard (`focused`), no text field takes the keys (`typing`)
/// and no modifier is held: so the host's own shortcuts keep working everywhere else.
fn shortcut(focused: bool, typing: bool, modifiers: bool, pressed: impl Fn(Key) -> bool) -> Option<Shortcut> {
    if !focused || typing || modifiers {
        return None;
    }
    [(Key::Space, Shortcut::ToggleAb), (Key::G, Shortcut::Generate), (Key::Escape, Shortcut::Cancel)]
        .into_iter()
        .find_map(|(key, shortcut)| pressed(key).then_some(shortcut))
}

/// The timeline span worth showing: everything captured, the region and every take (`None` when there is none).
fn full_span(captured: Option<Range<i64>>, region: Option<&Range<i64>>, takes: &[Range<i64>]) -> Option<Range<i64>> {
    let spans = captured.into_iter().chain(region.cloned()).chain(takes.iter().cloned());
    let span = spans.reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))?;
    (span.start < span.end).then_some(span)
}

/// Retake's editor app.
pub struct RetakeEditor {
    shared: Arc<Shared>,
    commands: Sender<Command>,
    gui: Option<GuiContext>,
    overviews: Option<Overviews>,
    /// Why the overview thread could not start, if it could not.
    overview_error: Option<String>,
    settings: SettingsForm,
    timeline: Timeline,
    lanes: Lanes,
}

impl Drop for RetakeEditor {
    fn drop(&mut self) {
        self.finish_deletes(true);
    }
}

impl RetakeEditor {
    /// An editor showing `shared` and sending commands to the job worker.
    pub fn new(shared: Arc<Shared>, commands: Sender<Command>) -> Self {
        Self {
            shared,
            commands,
            gui: None,
            overviews: None,
            overview_error: None,
            settings: SettingsForm::load(),
            timeline: Timeline::default(),
            lanes: Lanes::default(),
        }
    }

    fn send(&self, command: Command) {
        // The worker only goes away with the plugin, which outlives its editor.
        let _ = self.commands.send(command);
    }

    /// Deletes the takes whose undo time is over (all pending ones when `all`).
    fn finish_deletes(&mut self, all: bool) {
        for id in self.lanes.pending.due(Instant::now(), all) {
            self.send(Command::Delete(id));
        }
    }

    fn job(&self, action: JobAction) {
        self.send(match action {
            JobAction::Generate => Command::Generate,
            JobAction::Cancel => Command::Cancel,
        });
    }

    fn shortcuts(&self, ui: &Ui, setter: &ParamSetter) {
        let ctx = ui.ctx();
        let typing = ctx.egui_wants_keyboard_input();
        let pressed = ctx.input(|i| {
            let focused = i.viewport().focused != Some(false);
            shortcut(focused, typing, !i.modifiers.is_none(), |key| i.key_pressed(key))
        });
        let running = self.shared.board.lock().job != JobPhase::Idle;
        match pressed {
            Some(Shortcut::ToggleAb) => {
                let monitor = &self.shared.params.monitor;
                let other = if monitor.value() == Monitor::Take { Monitor::Original } else { Monitor::Take };
                set_param(setter, monitor, other);
            }
            Some(Shortcut::Generate) if !running => self.job(JobAction::Generate),
            Some(Shortcut::Cancel) if running => self.job(JobAction::Cancel),
            _ => {}
        }
    }

    /// The timeline with the original's header, then the takes' lanes.
    fn arrangement(&mut self, ui: &mut Ui, setter: &ParamSetter) {
        let params = self.shared.params.clone();
        let capture = self.shared.capture();
        let rate = capture.as_ref().map_or(48_000, |capture| capture.sample_rate());
        let transport = self.shared.transport.snapshot();
        let region = select_region(
            params.follow_loop.value(),
            transport.loop_range,
            params.start.value(),
            params.end.value(),
            rate,
        )
        .ok()
        .map(|region| region.range());
        let state = params.takes.read().clone();
        let take_spans: Vec<Range<i64>> = state.takes.iter().map(|take| take.region.at_rate(rate).range()).collect();
        let captured = capture.as_ref().and_then(|capture| capture.extent());
        let full = full_span(captured, region.as_ref(), &take_spans).unwrap_or(0..i64::from(rate) * 10);
        let span = self.timeline.view_span(&full, &transport);

        let (row, _) = ui.allocate_exact_size(egui::vec2(ui.available_width(), TIMELINE_HEIGHT), egui::Sense::hover());
        let header = Rect::from_min_max(row.min, egui::pos2(row.left() + GUTTER - 8.0, row.bottom()));
        let body = Rect::from_x_y_ranges(row.left() + GUTTER..=row.right(), row.y_range());
        let view = TimelineView { span: span.clone(), left: body.left(), width: body.width() };
        ui.scope_builder(UiBuilder::new().max_rect(header), |ui| {
            ui.strong("Original");
            ui.label(RichText::new("what the host plays into Retake").small().color(Color32::GRAY));
            ui.add_space(4.0);
            ui.label("Listen (space)");
            controls::segmented(ui, setter, &params.monitor, &["A  Original", "B  Take"]);
            ui.add_space(4.0);
            self.timeline.zoom_controls(ui);
        });
        if let Some(overviews) = &mut self.overviews {
            overviews.receive();
        }
        let peaks = match (&mut self.overviews, &capture) {
            (Some(overviews), Some(capture)) => {
                overviews.capture(capture, span, body.width().max(1.0) as usize).cloned()
            }
            _ => None,
        };
        let scene = TimelineScene { rate, transport: &transport, region, peaks: peaks.as_ref() };
        self.timeline.show(ui, body, &view, &scene, setter, &params);

        let folder = takes::takes_root().and_then(|root| takes::project_folder(&root, &state.project_id)).ok();
        let problems = self.shared.board.lock().take_problems.clone();
        let playing_take = params.monitor.value() == Monitor::Take;
        let lanes: Vec<Lane> = state
            .takes
            .iter()
            .rev()
            .map(|take| Lane {
                take,
                name: state.name(take.id),
                selected: state.selected == Some(take.id),
                playing: playing_take && state.selected == Some(take.id),
                problem: problems.get(&take.id),
                rate,
            })
            .collect();
        ui.add_space(4.0);
        if lanes.is_empty() {
            ui.horizontal(|ui| {
                ui.add_space(GUTTER);
                ui.label(
                    RichText::new("Takes appear here as lanes: mark a region, then Generate (G).").color(Color32::GRAY),
                );
            });
        }
        let actions = match &mut self.overviews {
            Some(overviews) => self.lanes.show(ui, &state, &lanes, GUTTER, &view, overviews, folder.as_ref()),
            None => Vec::new(),
        };
        for action in actions {
            match action {
                LaneAction::Play(id) => {
                    self.send(Command::Select(Some(id)));
                    set_param(setter, &params.monitor, Monitor::Take);
                }
                LaneAction::Delete(id) => {
                    let selected = state.selected == Some(id);
                    if selected {
                        self.send(Command::Select(None));
                    }
                    self.lanes.pending.delete(id, selected, Instant::now());
                }
                LaneAction::Rename(id, name) => params.takes.update(|state| state.rename(id, &name)),
            }
        }
        show_note(ui, self.lanes.note.as_ref());
    }

    fn status_lines(&self, ui: &mut Ui) {
        let engine = self.shared.board.lock().engine.clone();
        ui.label(RichText::new(engine).small());
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
        if let Some(error) = &self.overview_error {
            ui.colored_label(ERROR_COLOR, format!("waveforms cannot be drawn: {error}"));
        }
    }

    fn capture_size(&self, ui: &mut Ui) {
        let minutes = &self.shared.params.capture_minutes;
        let mut value = minutes.load(std::sync::atomic::Ordering::Relaxed);
        ui.horizontal(|ui| {
            ui.label("Capture size");
            let field = egui::DragValue::new(&mut value).range(CAPTURE_MINUTES).suffix(" min");
            if ui.add(field).on_hover_text("applies when the host next activates Retake").changed() {
                minutes.store(value, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }

    /// The region as text for the idle progress bar.
    fn region_text(&self) -> String {
        let params = &self.shared.params;
        let transport = self.shared.transport.snapshot();
        let rate = self.shared.capture().map_or(48_000, |capture| capture.sample_rate());
        match select_region(
            params.follow_loop.value(),
            transport.loop_range,
            params.start.value(),
            params.end.value(),
            rate,
        ) {
            Ok(region) => {
                let (start, end) = region.seconds();
                format!("the region {}–{}", format_seconds(start), format_seconds(end))
            }
            Err(_) => "the region (mark one on the timeline)".to_string(),
        }
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
        match Overviews::start() {
            Ok(overviews) => self.overviews = Some(overviews),
            Err(err) => self.overview_error = Some(err.to_string()),
        }
        Ok(())
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut nice_plug_egui::Frame) {
        ui.ctx().request_repaint_after(REPAINT_INTERVAL);
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        self.finish_deletes(false);
        self.shortcuts(ui, &setter);
        ResizableWindow::new("retake-window").min_size(egui::vec2(MIN_SIZE.0, MIN_SIZE.1)).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
                egui::Frame::new().inner_margin(egui::Margin::same(10)).show(ui, |ui| {
                    ui.add_space(4.0);
                    ui.horizontal(|ui| {
                        ui.heading(RichText::new("Retake").strong());
                        ui.label(RichText::new("repaint or cover a region with ACE-Step").color(Color32::GRAY));
                    });
                    ui.add_space(4.0);
                    self.arrangement(ui, &setter);
                    ui.separator();
                    let board = self.shared.board.lock().clone();
                    if let Some(action) = progress::job_row(ui, &board, &self.region_text()) {
                        self.job(action);
                    }
                    ui.separator();
                    let params = self.shared.params.clone();
                    controls::text_fields(&params, ui);
                    ui.add_space(4.0);
                    controls::main_controls(&params, &setter, ui);
                    ui.separator();
                    controls::sampling(&params, self.settings.variant(), &setter, ui);
                    controls::reference_row(&params, ui);
                    ui.separator();
                    self.capture_size(ui);
                    if self.settings.show(ui) {
                        self.send(Command::ReloadSettings);
                    }
                    self.status_lines(ui);
                    ui.label(
                        RichText::new("Keys while the editor has focus: Space A/B · G generate · Esc cancel")
                            .small()
                            .color(Color32::GRAY),
                    );
                });
            });
        });
    }

    fn editor_closed(&mut self) {
        self.finish_deletes(true);
        self.gui = None;
        self.overviews = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_work_only_while_the_editor_has_the_keyboard_and_no_text_field_does() {
        let only = |wanted: Key| move |key: Key| key == wanted;
        assert_eq!(shortcut(true, false, false, only(Key::Space)), Some(Shortcut::ToggleAb));
        assert_eq!(shortcut(true, false, false, only(Key::G)), Some(Shortcut::Generate));
        assert_eq!(shortcut(true, false, false, only(Key::Escape)), Some(Shortcut::Cancel));
        assert_eq!(shortcut(false, false, false, only(Key::G)), None, "another window has the keyboard");
        assert_eq!(shortcut(true, true, false, only(Key::G)), None, "typing a G into the prompt");
        assert_eq!(shortcut(true, false, true, only(Key::G)), None, "Ctrl+G is the host's");
        assert_eq!(shortcut(true, false, false, only(Key::H)), None);
    }

    #[test]
    fn the_timeline_spans_the_capture_the_region_and_every_take() {
        assert_eq!(full_span(None, None, &[]), None);
        assert_eq!(full_span(Some(100..500), None, &[]), Some(100..500));
        assert_eq!(full_span(Some(100..500), Some(&(50..200)), &[400..900, 300..350]), Some(50..900));
        assert_eq!(full_span(None, Some(&(5..5)), &[]), None);
    }
}
