//! The timeline: the captured stereo waveform (left above, right below), captured and missing stretches in
//! different colours, a seconds ruler and the host's beat grid, the host loop range, the region as a shaded
//! range whose edges drag (snapping to beats when the host reports a tempo; Shift drags freely), the playhead,
//! and zoom that follows the playhead while the host plays.

use std::ops::Range;

use egui::{Align2, Color32, FontId, Painter, Pos2, Rect, Sense, Stroke, Ui};
use nih_plug::prelude::ParamSetter;

use super::peaks::Peaks;
use crate::capture::StereoPeak;
use crate::params::RetakeParams;
use crate::transport::TransportSnapshot;

pub const CAPTURED_BG: Color32 = Color32::from_gray(36);
pub const MISSING_BG: Color32 = Color32::from_rgb(52, 26, 30);
const WAVE_COLOR: Color32 = Color32::from_rgb(150, 185, 225);
const REGION_FILL: Color32 = Color32::from_rgba_premultiplied(50, 80, 150, 80);
const REGION_EDGE: Color32 = Color32::from_rgb(120, 160, 255);
const LOOP_COLOR: Color32 = Color32::from_rgb(230, 190, 70);
const GRID_BEAT: Color32 = Color32::from_rgba_premultiplied(14, 14, 14, 14);
const GRID_BAR: Color32 = Color32::from_rgba_premultiplied(40, 40, 40, 40);
/// Pointer distance in points within which a region edge is grabbed.
const EDGE_GRAB: f32 = 6.0;
/// The most the timeline zooms in.
pub const MAX_ZOOM: f32 = 64.0;

/// Where timeline positions lie on screen: `span` (host timeline samples) drawn across `left..left + width`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineView {
    pub span: Range<i64>,
    pub left: f32,
    pub width: f32,
}

impl TimelineView {
    /// The x coordinate of timeline sample `t`.
    pub fn x_of(&self, t: i64) -> f32 {
        self.left + ((t - self.span.start) as f32 / (self.span.end - self.span.start).max(1) as f32) * self.width
    }

    /// The timeline sample under `x`, clamped to the span.
    pub fn time_at(&self, x: f32) -> i64 {
        let fraction = ((x - self.left) / self.width.max(1.0)).clamp(0.0, 1.0) as f64;
        self.span.start + (fraction * (self.span.end - self.span.start) as f64).round() as i64
    }
}

/// The part of `full` shown at `zoom` (1 = all of it): `1 / zoom` of it centred on `focus`, kept inside `full`.
pub fn zoomed_span(full: &Range<i64>, zoom: f32, focus: i64) -> Range<i64> {
    let length = full.end - full.start;
    let shown = ((length as f64 / f64::from(zoom.max(1.0))).round() as i64).clamp(1.min(length), length);
    let start = (focus - shown / 2).clamp(full.start, full.end - shown);
    start..start + shown
}

/// The host's beat grid: samples per beat from the tempo, and beats per bar from the time signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BeatGrid {
    pub samples_per_beat: f64,
    pub beats_per_bar: i32,
}

impl BeatGrid {
    /// The grid of a host reporting `tempo` (beats per minute) at `rate`; none without a usable tempo.
    pub fn new(tempo: Option<f64>, time_signature: Option<(i32, i32)>, rate: u32) -> Option<Self> {
        let tempo = tempo.filter(|tempo| tempo.is_finite() && *tempo > 0.0)?;
        let (numerator, denominator) = time_signature.unwrap_or((4, 4));
        // The tempo counts quarter notes; a beat of the signature is a 1/denominator note.
        let samples_per_beat = f64::from(rate) * 60.0 / tempo * 4.0 / f64::from(denominator.max(1));
        Some(Self { samples_per_beat, beats_per_bar: numerator.max(1) })
    }

    /// The beat nearest to timeline sample `t` (beats counted from the timeline's start).
    pub fn snap(&self, t: i64) -> i64 {
        ((t as f64 / self.samples_per_beat).round() * self.samples_per_beat).round() as i64
    }
}

/// What a drag on the timeline moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionDrag {
    /// The region's start edge (its end stays).
    Start { end: i64 },
    /// The region's end edge (its start stays).
    End { start: i64 },
    /// A new region from where the drag began.
    New { from: i64 },
}

impl RegionDrag {
    /// What a drag starting at `x` grabs: an edge of `region` within [`EDGE_GRAB`] points, else a new region.
    pub fn grab(view: &TimelineView, region: Option<Range<i64>>, x: f32, t: i64) -> Self {
        match region {
            Some(region) if (view.x_of(region.start) - x).abs() <= EDGE_GRAB => Self::Start { end: region.end },
            Some(region) if (view.x_of(region.end) - x).abs() <= EDGE_GRAB => Self::End { start: region.start },
            _ => Self::New { from: t },
        }
    }

    /// The region (start, end) in timeline samples with the pointer at `t`: either order, never before 0.
    pub fn region(self, t: i64) -> (i64, i64) {
        let fixed = match self {
            Self::Start { end } => end,
            Self::End { start } => start,
            Self::New { from } => from,
        };
        (fixed.min(t).max(0), fixed.max(t).max(0))
    }
}

/// Seconds between labelled ticks of the ruler: the shortest of a few round steps that leaves `min_px` between
/// labels when `seconds_per_px` seconds fit in a point.
pub fn ruler_step(seconds_per_px: f64, min_px: f64) -> f64 {
    const STEPS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0];
    STEPS.into_iter().find(|step| step / seconds_per_px >= min_px).unwrap_or(600.0)
}

/// The seconds captured and missing among `peaks`' columns, counted over the columns inside `span`.
pub fn captured_and_missing(peaks: &Peaks, span: &Range<i64>, rate: u32) -> (f64, f64) {
    let length = (peaks.span.end - peaks.span.start).max(1) as f64;
    let per_column = length / peaks.columns.len().max(1) as f64 / f64::from(rate);
    let (mut captured, mut missing) = (0.0, 0.0);
    for (index, column) in peaks.columns.iter().enumerate() {
        let t = peaks.span.start + (length * (index as f64 + 0.5) / peaks.columns.len() as f64) as i64;
        if span.contains(&t) {
            if column.is_some() {
                captured += per_column;
            } else {
                missing += per_column;
            }
        }
    }
    (captured, missing)
}

/// Draws one stereo waveform lane into `rect`: each pixel column's overview from `column_at` (left channel in
/// the upper half, right in the lower), the background marking stretches with and without audio when `marks`.
pub fn draw_waveform(
    painter: &Painter,
    rect: Rect,
    view: &TimelineView,
    color: Color32,
    marks: bool,
    column_at: impl Fn(i64) -> Option<Option<StereoPeak>>,
) {
    let halves = [rect.top() + rect.height() * 0.25, rect.top() + rect.height() * 0.75];
    let scale = rect.height() * 0.24;
    let mut x = rect.left().floor();
    while x < rect.right() {
        let Some(column) = column_at(view.time_at(x + 0.5)) else {
            x += 1.0;
            continue;
        };
        if marks {
            let background = if column.is_some() { CAPTURED_BG } else { MISSING_BG };
            painter.rect_filled(Rect::from_x_y_ranges(x..=x + 1.0, rect.y_range()), 0.0, background);
        }
        if let Some(sides) = column {
            for ((low, high), mid) in sides.into_iter().zip(halves) {
                let top = mid - high.clamp(-1.0, 1.0) * scale;
                let bottom = (mid - low.clamp(-1.0, 1.0) * scale).max(top + 1.0);
                painter.line_segment([Pos2::new(x + 0.5, top), Pos2::new(x + 0.5, bottom)], Stroke::new(1.0, color));
            }
        }
        x += 1.0;
    }
}

/// The timeline's view state.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// 1 shows everything.
    pub zoom: f32,
    /// Keep the playhead in view while the host plays.
    pub follow: bool,
    /// The timeline sample at the middle of the view when not following.
    focus: Option<i64>,
    drag: Option<RegionDrag>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self { zoom: 1.0, follow: true, focus: None, drag: None }
    }
}

/// What the timeline draws besides the waveform.
pub struct TimelineScene<'a> {
    pub rate: u32,
    pub transport: &'a TransportSnapshot,
    pub region: Option<Range<i64>>,
    pub peaks: Option<&'a Peaks>,
}

impl Timeline {
    /// The span shown out of `full`: zoomed around the playhead while following a playing host, else around the
    /// last focus.
    pub fn view_span(&mut self, full: &Range<i64>, transport: &TransportSnapshot) -> Range<i64> {
        let playhead = transport.position.filter(|_| self.follow && transport.playing);
        let focus = playhead.or(self.focus).unwrap_or((full.start + full.end) / 2);
        let span = zoomed_span(full, self.zoom, focus);
        self.focus = Some((span.start + span.end) / 2);
        span
    }

    /// Zoom buttons and the follow switch.
    pub fn zoom_controls(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.spacing_mut().item_spacing.x = 2.0;
            if ui.small_button("−").on_hover_text("zoom out (Ctrl + wheel)").clicked() {
                self.zoom = (self.zoom / 2.0).max(1.0);
            }
            if ui.small_button("+").on_hover_text("zoom in (Ctrl + wheel)").clicked() {
                self.zoom = (self.zoom * 2.0).min(MAX_ZOOM);
            }
            if ui.small_button("Fit").on_hover_text("show everything").clicked() {
                self.zoom = 1.0;
            }
            ui.add_space(6.0);
            ui.checkbox(&mut self.follow, "Follow").on_hover_text("scroll with the host playhead while it plays");
        });
    }

    /// Draws the timeline into `rect` and turns drags into the region parameters.
    pub fn show(
        &mut self,
        ui: &mut Ui,
        rect: Rect,
        view: &TimelineView,
        scene: &TimelineScene,
        setter: &ParamSetter,
        params: &RetakeParams,
    ) {
        let response = ui.allocate_rect(rect, Sense::click_and_drag());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 3.0, Color32::from_gray(22));
        let rate = f64::from(scene.rate);
        let grid = BeatGrid::new(scene.transport.tempo, scene.transport.time_signature, scene.rate);
        let wave = rect.shrink2(egui::vec2(0.0, 14.0));
        if let Some(peaks) = scene.peaks {
            draw_waveform(&painter, wave, view, WAVE_COLOR, true, |t| Some(peaks.at(t)));
        }
        // Beat grid, over the waveform.
        if let Some(grid) =
            grid.filter(|grid| view.x_of(grid.samples_per_beat as i64 + view.span.start) - view.left >= 6.0)
        {
            let first = (view.span.start as f64 / grid.samples_per_beat).ceil() as i64;
            let last = (view.span.end as f64 / grid.samples_per_beat).floor() as i64;
            for beat in first..=last {
                let x = view.x_of((beat as f64 * grid.samples_per_beat).round() as i64);
                let color = if beat % i64::from(grid.beats_per_bar) == 0 { GRID_BAR } else { GRID_BEAT };
                painter.line_segment([Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())], Stroke::new(1.0, color));
            }
        }
        // Ruler.
        let seconds_per_px = (view.span.end - view.span.start) as f64 / rate / f64::from(view.width.max(1.0));
        let step = ruler_step(seconds_per_px, 70.0);
        let first = (view.span.start as f64 / rate / step).ceil() as i64;
        let last = (view.span.end as f64 / rate / step).floor() as i64;
        for tick in first..=last {
            let seconds = tick as f64 * step;
            let x = view.x_of((seconds * rate).round() as i64);
            painter.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, rect.top() + 5.0)],
                Stroke::new(1.0, Color32::GRAY),
            );
            painter.text(
                Pos2::new(x + 2.0, rect.top() + 1.0),
                Align2::LEFT_TOP,
                format_seconds(seconds),
                FontId::monospace(10.0),
                Color32::GRAY,
            );
        }
        // Host loop.
        if let Some((start, end)) = scene.transport.loop_range {
            let (a, b) = (view.x_of(start).max(rect.left()), view.x_of(end).min(rect.right()));
            if a < b {
                painter.rect_filled(
                    Rect::from_x_y_ranges(a..=b, rect.bottom() - 5.0..=rect.bottom() - 1.0),
                    1.0,
                    LOOP_COLOR,
                );
                painter.text(
                    Pos2::new(a + 2.0, rect.bottom() - 6.0),
                    Align2::LEFT_BOTTOM,
                    "loop",
                    FontId::proportional(10.0),
                    LOOP_COLOR,
                );
            }
        }
        // Region.
        if let Some(region) = &scene.region {
            let (a, b) = (view.x_of(region.start), view.x_of(region.end));
            let area = Rect::from_x_y_ranges(a..=b, rect.y_range()).intersect(rect);
            if area.width() > 0.0 {
                painter.rect_filled(area, 0.0, REGION_FILL);
            }
            for x in [a, b].into_iter().filter(|x| rect.x_range().contains(*x)) {
                painter.line_segment(
                    [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
                    Stroke::new(2.0, REGION_EDGE),
                );
                painter.rect_filled(
                    Rect::from_center_size(Pos2::new(x, rect.center().y), egui::vec2(6.0, 18.0)),
                    2.0,
                    REGION_EDGE,
                );
            }
        }
        // Captured and missing seconds in view.
        if let Some(peaks) = scene.peaks {
            let (captured, missing) = captured_and_missing(peaks, &view.span, scene.rate);
            let text = format!("captured {captured:.1} s · missing {missing:.1} s in view");
            painter.text(
                Pos2::new(rect.right() - 4.0, rect.bottom() - 1.0),
                Align2::RIGHT_BOTTOM,
                text,
                FontId::proportional(10.0),
                Color32::from_gray(170),
            );
        }
        if scene.peaks.is_none_or(|peaks| peaks.columns.iter().all(Option::is_none)) {
            let hint = "Play the song: Retake captures what passes through it.";
            painter.text(rect.center(), Align2::CENTER_CENTER, hint, FontId::proportional(14.0), Color32::LIGHT_GRAY);
        }
        // Playhead.
        if let Some(position) = scene.transport.position.filter(|position| view.span.contains(position)) {
            let x = view.x_of(position);
            painter.line_segment(
                [Pos2::new(x, rect.top()), Pos2::new(x, rect.bottom())],
                Stroke::new(1.5, Color32::WHITE),
            );
        }
        self.pointer(ui, &response, view, scene, setter, params, grid);
    }

    /// Wheel zoom and pan, edge cursors, hover time, and region drags.
    #[allow(clippy::too_many_arguments)]
    fn pointer(
        &mut self,
        ui: &Ui,
        response: &egui::Response,
        view: &TimelineView,
        scene: &TimelineScene,
        setter: &ParamSetter,
        params: &RetakeParams,
        grid: Option<BeatGrid>,
    ) {
        if response.hovered() {
            let (scroll, zoom_delta, free) = ui.input(|i| (i.smooth_scroll_delta, i.zoom_delta(), i.modifiers.shift));
            if zoom_delta != 1.0 {
                self.zoom = (self.zoom * zoom_delta).clamp(1.0, MAX_ZOOM);
            } else if scroll.x != 0.0 || (scroll.y != 0.0 && self.zoom > 1.0) {
                let delta = if scroll.x != 0.0 { scroll.x } else { scroll.y };
                let per_px = (view.span.end - view.span.start) as f32 / view.width.max(1.0);
                self.focus = self.focus.map(|focus| focus - (delta * per_px) as i64);
                self.follow = false;
            }
            if let Some(pos) = response.hover_pos() {
                let t = view.time_at(pos.x);
                if matches!(
                    RegionDrag::grab(view, scene.region.clone(), pos.x, t),
                    RegionDrag::Start { .. } | RegionDrag::End { .. }
                ) {
                    ui.ctx().set_cursor_icon(egui::CursorIcon::ResizeHorizontal);
                }
                let snap = if free { "" } else { " · Shift: no snapping" };
                response.clone().on_hover_text_at_pointer(format!(
                    "{}{snap}\ndrag: mark the region · drag an edge: move it",
                    format_seconds(t as f64 / f64::from(scene.rate))
                ));
            }
        }
        let free = ui.input(|i| i.modifiers.shift);
        let pointer = response.interact_pointer_pos().map(|pos| {
            let t = view.time_at(pos.x);
            (pos.x, grid.filter(|_| !free).map_or(t, |grid| grid.snap(t)))
        });
        if response.drag_started() {
            if let Some((x, t)) = pointer {
                self.drag = Some(RegionDrag::grab(view, scene.region.clone(), x, t));
                super::controls::set_param(setter, &params.follow_loop, false);
                setter.begin_set_parameter(&params.start);
                setter.begin_set_parameter(&params.end);
            }
        }
        if let (Some(drag), Some((_, t))) = (self.drag, pointer) {
            let (start, end) = drag.region(t);
            let seconds = |t: i64| (t as f64 / f64::from(scene.rate)) as f32;
            setter.set_parameter(&params.start, seconds(start));
            setter.set_parameter(&params.end, seconds(end));
        }
        if response.drag_stopped() && self.drag.take().is_some() {
            setter.end_set_parameter(&params.start);
            setter.end_set_parameter(&params.end);
        }
    }
}

/// `s.ss s` below ten seconds, `s.s s` below a minute, else `m:ss.s`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds.abs() < 10.0 {
        format!("{seconds:.2} s")
    } else if seconds.abs() < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.max(0.0);
        format!("{}:{:04.1}", (whole / 60.0).floor() as i64, whole % 60.0)
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
        assert_eq!(view.time_at(-50.0), 48_000);
        assert_eq!(view.time_at(5_000.0), 144_000);
    }

    #[test]
    fn zooming_shows_part_of_the_timeline_around_the_focus_and_stays_inside_it() {
        let full = 0..100_000;
        assert_eq!(zoomed_span(&full, 1.0, 12_345), 0..100_000);
        assert_eq!(zoomed_span(&full, 4.0, 50_000), 37_500..62_500);
        // Near the ends the view stops at the timeline's edge instead of showing nothing.
        assert_eq!(zoomed_span(&full, 4.0, 1_000), 0..25_000);
        assert_eq!(zoomed_span(&full, 4.0, 99_000), 75_000..100_000);
        assert_eq!(zoomed_span(&(10..20), 64.0, 15), 15..16);
    }

    #[test]
    fn following_a_playing_host_keeps_the_playhead_in_the_middle() {
        let mut timeline = Timeline { zoom: 10.0, ..Timeline::default() };
        let playing = TransportSnapshot { playing: true, position: Some(480_000), ..TransportSnapshot::default() };
        assert_eq!(timeline.view_span(&(0..960_000), &playing), 432_000..528_000);
        // Stopped, the view stays where it was.
        let stopped = TransportSnapshot { playing: false, position: Some(900_000), ..playing };
        assert_eq!(timeline.view_span(&(0..960_000), &stopped), 432_000..528_000);
    }

    #[test]
    fn region_edges_snap_to_the_host_beat_grid() {
        // 120 bpm in 4/4 at 48 kHz: a beat every 24 000 samples, four to the bar.
        let grid = BeatGrid::new(Some(120.0), Some((4, 4)), 48_000).unwrap();
        assert_eq!(grid, BeatGrid { samples_per_beat: 24_000.0, beats_per_bar: 4 });
        assert_eq!(grid.snap(35_000), 24_000);
        assert_eq!(grid.snap(37_000), 48_000);
        // 6/8 counts eighth notes: at 90 quarter notes a minute an eighth lasts 1/3 s.
        let eighths = BeatGrid::new(Some(90.0), Some((6, 8)), 48_000).unwrap();
        assert_eq!(eighths.snap(10_000), 16_000);
        assert_eq!(BeatGrid::new(None, Some((4, 4)), 48_000), None);
        assert_eq!(BeatGrid::new(Some(0.0), None, 48_000), None);
    }

    #[test]
    fn dragging_an_edge_moves_only_that_edge_and_a_drag_elsewhere_marks_a_new_region() {
        let view = TimelineView { span: 0..960_000, left: 0.0, width: 960.0 };
        let region = Some(96_000..192_000); // x 96 .. 192
        assert_eq!(RegionDrag::grab(&view, region.clone(), 97.0, 97_000), RegionDrag::Start { end: 192_000 });
        assert_eq!(RegionDrag::grab(&view, region.clone(), 188.0, 188_000), RegionDrag::End { start: 96_000 });
        assert_eq!(RegionDrag::grab(&view, region, 400.0, 400_000), RegionDrag::New { from: 400_000 });
        assert_eq!(RegionDrag::Start { end: 192_000 }.region(48_000), (48_000, 192_000));
        // Past the other edge the edges swap instead of making an empty region.
        assert_eq!(RegionDrag::Start { end: 192_000 }.region(240_000), (192_000, 240_000));
        assert_eq!(RegionDrag::End { start: 96_000 }.region(300_000), (96_000, 300_000));
        assert_eq!(RegionDrag::New { from: 240_000 }.region(96_000), (96_000, 240_000));
        assert_eq!(RegionDrag::New { from: 4_800 }.region(-9_600), (0, 4_800), "never before the timeline's start");
    }

    #[test]
    fn captured_and_missing_seconds_are_counted_in_view() {
        let peaks = Peaks { span: 0..96_000, columns: vec![Some([(0.0, 0.1); 2]), None, Some([(0.0, 0.1); 2]), None] };
        assert_eq!(captured_and_missing(&peaks, &(0..96_000), 48_000), (1.0, 1.0));
        assert_eq!(captured_and_missing(&peaks, &(0..48_000), 48_000), (0.5, 0.5));
    }

    #[test]
    fn ruler_steps_leave_room_for_their_labels() {
        assert_eq!(ruler_step(0.001, 70.0), 0.1);
        assert_eq!(ruler_step(0.1, 70.0), 10.0);
        assert_eq!(ruler_step(100.0, 70.0), 600.0);
        assert_eq!(format_seconds(2.5), "2.50 s");
        assert_eq!(format_seconds(12.0), "12.0 s");
        assert_eq!(format_seconds(75.3), "1:15.3");
    }
}
