//! Takes as lanes under the original, as DAW comping lanes show them: each take's waveform over its region,
//! its name, prompt, seed and settings on hover, the playing take highlighted; a click plays a take; each lane
//! has rename, copy path / show in the file manager, export and delete (with undo for a few seconds). The
//! windowing layer (baseview) offers no drag-and-drop out of the window, so the file is reached by its path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, TextEdit, Ui, UiBuilder};

use super::peaks::{Overviews, TakePeaks};
use super::progress::ERROR_COLOR;
use super::timeline::{draw_waveform, format_seconds, TimelineView};
use crate::reveal;
use crate::takes::{self, TakeMeta, TakesState};

/// How long a deleted take can be brought back.
pub const UNDO_WINDOW: Duration = Duration::from_secs(10);
pub const LANE_HEIGHT: f32 = 46.0;
const TAKE_WAVE: Color32 = Color32::from_rgb(110, 190, 130);
const PLAYING_WAVE: Color32 = Color32::from_rgb(160, 240, 170);
const PLAYING_FILL: Color32 = Color32::from_rgb(30, 58, 40);
const PLAYING_EDGE: Color32 = Color32::from_rgb(140, 230, 150);

/// Takes deleted in the editor but not yet removed: their lanes are hidden, and until [`UNDO_WINDOW`] has
/// passed the last one can be brought back. Only then does the job worker delete the take and its files.
#[derive(Debug, Default)]
pub struct PendingDeletes {
    /// Oldest first: the take's id, whether it was the selected one, when it was deleted.
    entries: Vec<(u64, bool, Instant)>,
}

impl PendingDeletes {
    /// Hides take `id` (`selected`: it was the playing take).
    pub fn delete(&mut self, id: u64, selected: bool, now: Instant) {
        self.entries.retain(|(pending, _, _)| *pending != id);
        self.entries.push((id, selected, now));
    }

    /// Whether take `id` is hidden.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.iter().any(|(pending, _, _)| *pending == id)
    }

    /// The take that Undo would bring back.
    pub fn last(&self) -> Option<u64> {
        self.entries.last().map(|(id, _, _)| *id)
    }

    /// Brings the last deleted take back: its id, and whether it was the selected one.
    pub fn undo(&mut self) -> Option<(u64, bool)> {
        self.entries.pop().map(|(id, selected, _)| (id, selected))
    }

    /// The takes whose undo time is over at `now`, removed from the pending list (or all of them when `all`).
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<u64> {
        let (due, keep) =
            self.entries.drain(..).partition::<Vec<_>, _>(|(_, _, at)| all || now.duration_since(*at) >= UNDO_WINDOW);
        self.entries = keep;
        due.into_iter().map(|(id, _, _)| id).collect()
    }
}

/// What the user did on a lane.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneAction {
    /// Play this take (select it and monitor the take).
    Play(u64),
    /// Delete it (undoable).
    Delete(u64),
    /// Give it a name.
    Rename(u64, String),
}

/// A lane being renamed or exported.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneEdit {
    Rename { id: u64, text: String },
    Export { id: u64, path: String },
}

/// The default export destination for a take named `name`: that name (letters, digits, spaces, `-`, `_` kept)
/// as a `.wav` in the user's home folder.
pub fn export_destination(home: Option<&Path>, name: &str) -> PathBuf {
    let stem: String =
        name.chars().map(|c| if c.is_alphanumeric() || matches!(c, ' ' | '-' | '_') { c } else { '_' }).collect();
    let stem = if stem.trim().is_empty() { "take".to_string() } else { stem.trim().to_string() };
    home.map_or_else(PathBuf::new, Path::to_path_buf).join(format!("Retake {stem}.wav"))
}

/// The user's home folder (`HOME`, or `USERPROFILE` on Windows).
fn home_folder() -> Option<PathBuf> {
    ["HOME", "USERPROFILE"].into_iter().filter_map(std::env::var_os).map(PathBuf::from).find(|path| path.is_absolute())
}

/// The lane of one take.
pub struct Lane<'a> {
    pub take: &'a TakeMeta,
    pub name: String,
    pub selected: bool,
    /// The take plays (it is selected and Monitor is Take).
    pub playing: bool,
    pub problem: Option<&'a String>,
    pub rate: u32,
}

/// The takes' lanes with their headers (header `gutter` wide, lane across `view`).
#[derive(Default)]
pub struct Lanes {
    pub pending: PendingDeletes,
    pub edit: Option<LaneEdit>,
    /// What the last file action did: the path it copied or exported, or why it could not.
    pub note: Option<Result<String, String>>,
}

impl Lanes {
    /// Draws the lanes of `state`'s takes (newest on top, hidden deletes left out); returns what the user did.
    #[allow(clippy::too_many_arguments)]
    pub fn show(
        &mut self,
        ui: &mut Ui,
        state: &TakesState,
        lanes: &[Lane],
        gutter: f32,
        view: &TimelineView,
        overviews: &mut Overviews,
        folder: Option<&PathBuf>,
    ) -> Vec<LaneAction> {
        let mut actions = Vec::new();
        let shown: Vec<&Lane> = lanes.iter().filter(|lane| !self.pending.contains(lane.take.id)).collect();
        for lane in shown {
            let (row, _) = ui.allocate_exact_size(egui::vec2(ui.available_width(), LANE_HEIGHT), Sense::hover());
            let header = Rect::from_min_max(row.min, Pos2::new(row.left() + gutter - 8.0, row.bottom()));
            let body = Rect::from_x_y_ranges(view.left..=view.left + view.width, row.y_range());
            self.header(ui, header, lane, &mut actions);
            self.body(ui, body, view, lane, overviews, folder, &mut actions);
            if let Some(LaneEdit::Export { id, path }) = &mut self.edit {
                if *id == lane.take.id {
                    let mut done = false;
                    ui.horizontal(|ui| {
                        ui.label("Export to");
                        ui.add(TextEdit::singleline(path).desired_width(ui.available_width() - 140.0));
                        if ui.button("Save").clicked() {
                            let destination = PathBuf::from(path.trim());
                            self.note = Some(match folder {
                                Some(folder) => takes::export_copy(lane.take, folder, &destination)
                                    .map(|()| format!("exported {}", destination.display())),
                                None => Err("this project has no take folder".to_string()),
                            });
                            done = true;
                        }
                        if ui.button("Cancel").clicked() {
                            done = true;
                        }
                    });
                    if done {
                        self.edit = None;
                    }
                }
            }
        }
        if let Some(id) = self.pending.last() {
            ui.horizontal(|ui| {
                ui.label(format!("{} deleted.", state.name(id)));
                if ui.button("Undo").clicked() {
                    if let Some((id, selected)) = self.pending.undo() {
                        if selected {
                            actions.push(LaneAction::Play(id));
                        }
                    }
                }
            });
        }
        actions
    }

    /// The lane header: name (or the rename box), seed and mode, and the lane's menu.
    fn header(&mut self, ui: &mut Ui, rect: Rect, lane: &Lane, actions: &mut Vec<LaneAction>) {
        let id = lane.take.id;
        ui.scope_builder(UiBuilder::new().max_rect(rect), |ui| {
            ui.horizontal(|ui| {
                match &mut self.edit {
                    Some(LaneEdit::Rename { id: editing, text }) if *editing == id => {
                        let response = ui.add(TextEdit::singleline(text).desired_width(rect.width() - 40.0));
                        if !response.lost_focus() {
                            response.request_focus();
                        }
                        if response.lost_focus() {
                            let text = text.clone();
                            if !ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                                actions.push(LaneAction::Rename(id, text));
                            }
                            self.edit = None;
                        }
                    }
                    _ => {
                        let name = RichText::new(&lane.name).strong();
                        let name = if lane.playing { name.color(PLAYING_EDGE) } else { name };
                        if ui
                            .add(egui::Label::new(name).sense(Sense::click()))
                            .on_hover_text("double-click to rename")
                            .double_clicked()
                        {
                            self.edit = Some(LaneEdit::Rename { id, text: lane.name.clone() });
                        }
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.small_button("Delete").on_hover_text("delete (undo for a few seconds)").clicked() {
                        actions.push(LaneAction::Delete(id));
                    }
                    ui.menu_button("More", |ui| {
                        if ui.button("Rename").clicked() {
                            self.edit = Some(LaneEdit::Rename { id, text: lane.name.clone() });
                            ui.close();
                        }
                        let file = &lane.take.host_file.path;
                        if ui.button("Copy path and show in file manager").clicked() {
                            ui.ctx().copy_text(file.display().to_string());
                            self.note = Some(match reveal::reveal(file) {
                                Ok(()) => Ok(format!("copied {}", file.display())),
                                Err(err) => Err(format!("copied {}, but cannot show it: {err}", file.display())),
                            });
                            ui.close();
                        }
                        if ui.button("Export…").clicked() {
                            let path = export_destination(home_folder().as_deref(), &lane.name);
                            self.edit = Some(LaneEdit::Export { id, path: path.display().to_string() });
                            ui.close();
                        }
                        if ui.button("Delete").clicked() {
                            actions.push(LaneAction::Delete(id));
                            ui.close();
                        }
                    });
                });
            });
            let (start, end) = lane.take.region.seconds();
            let mode = lane.take.summary.split(" · ").next().unwrap_or_default();
            let line = format!("seed {} · {mode} · {}–{}", lane.take.seed, format_seconds(start), format_seconds(end));
            match lane.problem {
                Some(_) => ui.colored_label(ERROR_COLOR, RichText::new("cannot play (hover)").small()),
                None => ui.label(RichText::new(line).small().color(Color32::from_gray(160))),
            };
        });
    }

    /// The lane itself: the take's waveform over its region, highlighted while it plays; click to play it.
    #[allow(clippy::too_many_arguments)]
    fn body(
        &mut self,
        ui: &mut Ui,
        rect: Rect,
        view: &TimelineView,
        lane: &Lane,
        overviews: &mut Overviews,
        folder: Option<&PathBuf>,
        actions: &mut Vec<LaneAction>,
    ) {
        let response = ui.allocate_rect(rect.shrink2(egui::vec2(0.0, 2.0)), Sense::click());
        let painter = ui.painter_at(rect);
        let rect = response.rect;
        painter.rect_filled(rect, 3.0, Color32::from_gray(26));
        let region = lane.take.region.at_rate(lane.rate);
        let area =
            Rect::from_x_y_ranges(view.x_of(region.start)..=view.x_of(region.end), rect.y_range()).intersect(rect);
        if area.width() > 0.0 {
            let (fill, edge) = match (lane.playing, lane.selected) {
                (true, _) => (PLAYING_FILL, Stroke::new(2.0, PLAYING_EDGE)),
                (false, true) => (Color32::from_gray(40), Stroke::new(1.5, PLAYING_EDGE.gamma_multiply(0.6))),
                (false, false) => (Color32::from_gray(38), Stroke::new(1.0, Color32::from_gray(70))),
            };
            painter.rect(area, 3.0, fill, edge, egui::StrokeKind::Inside);
            let color = if lane.playing { PLAYING_WAVE } else { TAKE_WAVE };
            match overviews.take(lane.take, folder) {
                TakePeaks::Ready(columns) => {
                    let length = (region.end - region.start).max(1);
                    draw_waveform(&painter, area, view, color, false, |t| {
                        let index = (t - region.start) as i128 * columns.len() as i128 / length as i128;
                        (0..columns.len() as i128).contains(&index).then(|| columns[index as usize])
                    });
                }
                TakePeaks::Pending => {}
                TakePeaks::Failed(_) => {
                    painter.text(
                        area.center(),
                        Align2::CENTER_CENTER,
                        "no waveform",
                        FontId::proportional(11.0),
                        ERROR_COLOR,
                    );
                }
            }
        }
        if lane.playing {
            painter.text(
                Pos2::new(rect.right() - 4.0, rect.top() + 2.0),
                Align2::RIGHT_TOP,
                "playing",
                FontId::proportional(10.0),
                PLAYING_EDGE,
            );
        }
        let response = response.on_hover_ui(|ui| {
            ui.strong(&lane.name);
            ui.label(&lane.take.summary);
            ui.label(format!("seed {}", lane.take.seed));
            let (start, end) = lane.take.region.seconds();
            ui.label(format!("region {}–{}", format_seconds(start), format_seconds(end)));
            if let Some(problem) = lane.problem {
                ui.colored_label(ERROR_COLOR, format!("cannot play: {problem}"));
            } else {
                ui.label("click to play this take");
            }
        });
        if response.clicked() {
            actions.push(LaneAction::Play(lane.take.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_take_can_be_brought_back_until_its_undo_time_is_over() {
        let start = Instant::now();
        let mut pending = PendingDeletes::default();
        pending.delete(3, true, start);
        pending.delete(5, false, start + Duration::from_secs(4));
        assert!(pending.contains(3) && pending.contains(5) && !pending.contains(4));
        assert_eq!(pending.due(start + Duration::from_secs(9), false), Vec::<u64>::new());
        assert_eq!(pending.undo(), Some((5, false)), "undo brings back the last deleted take");
        assert!(!pending.contains(5));
        assert_eq!(pending.due(start + UNDO_WINDOW, false), vec![3], "then the delete goes through");
        assert_eq!(pending.undo(), None);
        pending.delete(7, false, start);
        assert_eq!(pending.due(start, true), vec![7], "closing the editor deletes what is pending");
    }

    #[test]
    fn the_export_destination_is_the_takes_name_in_the_home_folder() {
        let home = Path::new("/home/ana");
        assert_eq!(
            export_destination(Some(home), "Chorus: take 2/3"),
            PathBuf::from("/home/ana/Retake Chorus_ take 2_3.wav")
        );
        assert_eq!(export_destination(Some(home), "  "), PathBuf::from("/home/ana/Retake take.wav"));
    }
}
