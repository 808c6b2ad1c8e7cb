//! The dashboard's HTML, rendered on the server from what the cluster said (maud escapes every
//! value: names, messages and logs are whatever users and containers wrote). Phases are said
//! in words and signs as well as colours; bars are links and step details are disclosures, so
//! the page works from the keyboard; the layout folds to one column on a narrow screen.

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::timeline::{Bar, Row, Timeline};
use crate::api::{BackfillPhase, RunPhase};

/// One line of the overview: a link to the object and the cells of `kubectl syncseq status`.
pub(crate) struct Line {
    pub href: String,
    /// Namespace (with -A), name, last result, last success, now, next schedule.
    pub cells: Vec<String>,
    pub unreadable: bool,
}

pub(crate) struct Overview {
    /// "namespace revops", "all namespaces".
    pub scope: String,
    pub with_namespace: bool,
    pub lines: Vec<Line>,
    /// What could not be read, said instead of it (a namespace the user may not list).
    pub errors: Vec<String>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

pub(crate) struct Event {
    pub time: String,
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// A step's log tail, or why there is none.
pub(crate) struct LogTail {
    pub step: String,
    pub text: Result<String, String>,
}

/// The object's newest backfill: in progress, or how it ended.
pub(crate) struct Backfill {
    pub phase: BackfillPhase,
    /// What `kubectl syncseq status` says of it after its phase.
    pub facts: String,
    pub message: Option<String>,
}

pub(crate) struct Detail {
    pub namespace: String,
    /// `syncsequence/crm`, `sync/accounts`.
    pub reference: String,
    /// The overview cells of the object, without its name.
    pub summary: Vec<(&'static str, String)>,
    pub backfill: Option<Backfill>,
    pub timeline: Timeline,
    pub now: Timestamp,
    pub events: Vec<Event>,
    pub log: Option<LogTail>,
    /// Where the page listens for changes (server-sent events).
    pub changes: String,
}

const STYLE: &str = include_str!("assets/dashboard.css");
const SCRIPT: &str = include_str!("assets/dashboard.js");

fn layout(title: &str, changes: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · syncseq" }
                style { (PreEscaped(STYLE)) }
            }
            body data-changes=[changes] {
                header {
                    a href="/" { "syncseq" }
                    span { (title) }
                }
                main { (body) }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// A page that says what could not be shown, and the way back.
pub(crate) fn error(message: &str) -> String {
    let body = html! {
        p.error role="alert" { "✗ " (message) }
        p { a href="/" { "Back to the overview" } }
    };
    layout("error", None, body).into_string()
}

const HEADER: [&str; 6] = [
    "Namespace",
    "Name",
    "Last result",
    "Last success",
    "Now",
    "Next schedule",
];

pub(crate) fn overview(view: &Overview) -> String {
    let header = if view.with_namespace {
        &HEADER[..]
    } else {
        &HEADER[1..]
    };
    let name_at = usize::from(view.with_namespace);
    let page_link = |p: usize| format!("/?page={p}");
    let body = html! {
        @for error in &view.errors {
            p.error role="alert" { "✗ " (error) }
        }
        @if view.lines.is_empty() && view.errors.is_empty() {
            p { "No SyncSequences or Syncs in " (view.scope) "." }
        } @else {
            table.overview {
                caption { (view.total) " objects in " (view.scope) }
                thead { tr { @for h in header { th scope="col" { (h) } } } }
                tbody {
                    @for line in &view.lines {
                        tr.unreadable[line.unreadable] {
                            @for (i, cell) in line.cells.iter().enumerate() {
                                @if i == name_at {
                                    th scope="row" { a href=(line.href) { (cell) } }
                                } @else {
                                    td { (cell) }
                                }
                            }
                        }
                    }
                }
            }
            @if view.pages > 1 {
                nav.pages aria-label="Pages" {
                    @if view.page > 1 { a href=(page_link(view.page - 1)) rel="prev" { "← previous" } }
                    span { "page " (view.page) " of " (view.pages) }
                    @if view.page < view.pages { a href=(page_link(view.page + 1)) rel="next" { "next →" } }
                }
            }
        }
    };
    layout(&view.scope, None, body).into_string()
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration(from: Timestamp, to: Timestamp) -> String {
    let secs = to.duration_since(from).as_secs().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn run_phase(phase: Option<RunPhase>) -> &'static str {
    match phase {
        Some(RunPhase::Running) => "▶ Running",
        Some(RunPhase::Succeeded) => "✓ Succeeded",
        Some(RunPhase::SucceededWithErrors) => "⚠ Succeeded with errors",
        Some(RunPhase::Failed) => "✗ Failed",
        Some(RunPhase::Cancelled) => "■ Cancelled",
        None => "?",
    }
}

/// A backfill's phase in words and a sign, and its class for the colour.
fn backfill_phase(phase: BackfillPhase) -> (&'static str, &'static str) {
    match phase {
        BackfillPhase::Running => ("▶ Running", "running"),
        BackfillPhase::Succeeded => ("✓ Succeeded", "succeeded"),
        BackfillPhase::Failed => ("✗ Failed", "failed"),
        BackfillPhase::Cancelled => ("■ Cancelled", "cancelled"),
        BackfillPhase::Refused => ("✗ Refused", "failed"),
    }
}

fn rows_text(bar: &Bar) -> Option<String> {
    match (bar.rows_synced, bar.rows_rejected) {
        (None, None) => None,
        (synced, rejected) => Some(format!(
            "{} rows synced, {} rejected",
            synced.unwrap_or(0),
            rejected.unwrap_or(0)
        )),
    }
}

fn bar_id(row: &Row, bar: &Bar) -> String {
    format!("run-{}-{}-{}", row.run, bar.step, bar.attempt)
}

fn bar_summary(bar: &Bar, now: Timestamp) -> String {
    let mut parts = vec![
        format!("{} (attempt {})", bar.step, bar.attempt),
        bar.phase.label().to_string(),
        duration(bar.start, bar.end.unwrap_or(now)),
    ];
    parts.extend(rows_text(bar));
    parts.join(" · ")
}

fn timeline(tl: &Timeline, now: Timestamp) -> Markup {
    html! {
        section.timeline aria-label="Recent runs" data-t0=(ms(tl.t0)) data-t1=(ms(tl.t1)) data-now=(ms(now)) {
            h2 { "Recent runs" }
            @if tl.rows.is_empty() {
                p { "No runs yet." }
            } @else {
                div.axis aria-hidden="true" { span { (time(tl.t0)) } span { (time(tl.t1)) } }
                ol.rows {
                    @for row in &tl.rows {
                        li.row {
                            div.run-label {
                                strong { "run " (row.run) } " " span.phase { (run_phase(row.phase)) }
                                @if let Some(start) = row.start {
                                    " · " (time(start))
                                }
                            }
                            // Steps that ran at the same time on lanes of the track, one above
                            // the other; the stylesheet spaces them by `--lane`.
                            div.track style={ "--lanes:" (row.lanes) } {
                                @for bar in &row.bars {
                                    a class={ "bar " (bar.phase.class()) }
                                        href={ "#" (bar_id(row, bar)) }
                                        style={ "left:" (format!("{:.3}", bar.left)) "%;width:" (format!("{:.3}", bar.width)) "%;--lane:" (bar.lane) }
                                        data-start=(ms(bar.start))
                                        data-running=(if bar.end.is_none() { "1" } else { "0" })
                                        title=(bar_summary(bar, now))
                                        aria-label=(bar_summary(bar, now)) {
                                        span.bar-text { (bar.step) " " (bar.phase.label().split(' ').next().unwrap_or_default()) }
                                    }
                                }
                            }
                            @if let Some(message) = &row.message {
                                p.run-message { (message) }
                            }
                            ul.steps {
                                @for bar in &row.bars {
                                    li id=(bar_id(row, bar)) class=(bar.phase.class()) {
                                        details open[bar.message.is_some() && bar.phase.class() == "failed"] {
                                            summary { (bar_summary(bar, now)) }
                                            @if let Some(message) = &bar.message {
                                                p.message { (message) }
                                            }
                                            p.job { "Job " code { (bar.job) } ", started " (time(bar.start)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn detail(view: &Detail) -> String {
    let body = html! {
        h1 { (view.reference) " " small { "in " (view.namespace) } }
        dl.summary {
            @for (term, value) in &view.summary {
                dt { (term) } dd { (value) }
            }
        }
        @if let Some(bf) = &view.backfill {
            @let (label, class) = backfill_phase(bf.phase);
            section.backfill aria-label="Backfill" {
                h2 { "Backfill" }
                p { strong class=(class) { (label) } " · " (bf.facts) }
                @if let Some(message) = &bf.message {
                    p.run-message { (message) }
                }
            }
        }
        (timeline(&view.timeline, view.now))
        @if let Some(log) = &view.log {
            section.log aria-label="Log of the failed step" {
                h2 { "Log of step " (log.step) }
                @match &log.text {
                    Ok(text) => pre tabindex="0" { (text) },
                    Err(why) => p.error { "✗ " (why) },
                }
            }
        }
        section.events aria-label="Events" {
            h2 { "Events of the shown runs" }
            @if view.events.is_empty() {
                p { "None (Events expire after an hour by default)." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Type" } th scope="col" { "Reason" } th scope="col" { "Message" } } }
                    tbody {
                        @for e in &view.events {
                            tr.warning[e.warning] {
                                td { (e.time) }
                                td { @if e.warning { "⚠ Warning" } @else { "Normal" } }
                                td { (e.reason) }
                                td { (e.note) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&view.reference, Some(&view.changes), body).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::dashboard::timeline::BarPhase;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn view(message: &str) -> Detail {
        let bar = Bar {
            step: "workspaces".into(),
            attempt: 2,
            job: "crm-1-workspaces-2".into(),
            phase: BarPhase::Failed,
            start: t("2026-12-01T10:00:10Z"),
            end: Some(t("2026-12-01T10:00:20Z")),
            left: 25.0,
            width: 25.0,
            lane: 1,
            rows_synced: Some(340),
            rows_rejected: Some(2),
            message: Some(message.into()),
        };
        Detail {
            namespace: "revops".into(),
            reference: "syncsequence/crm".into(),
            summary: vec![("Last result", "Failed".into())],
            backfill: None,
            timeline: Timeline {
                t0: t("2026-12-01T10:00:00Z"),
                t1: t("2026-12-01T10:00:40Z"),
                rows: vec![Row {
                    run: 1,
                    phase: Some(RunPhase::Failed),
                    start: Some(t("2026-12-01T10:00:00Z")),
                    end: Some(t("2026-12-01T10:00:40Z")),
                    message: None,
                    bars: vec![bar],
                    lanes: 2,
                }],
            },
            now: t("2026-12-01T11:00:00Z"),
            events: vec![],
            log: Some(LogTail {
                step: "workspaces".into(),
                text: Ok("<b>503</b>".into()),
            }),
            changes: "/changes".into(),
        }
    }

    #[test]
    fn a_failed_step_shows_its_phase_in_words_and_its_message_opened() {
        let html = detail(&view("CRM API said 503"));
        assert!(html.contains("✗ Failed"), "{html}");
        assert!(
            html.contains("workspaces (attempt 2) · ✗ Failed · 10s · 340 rows synced, 2 rejected")
        );
        assert!(
            html.contains("<details open><summary>"),
            "failed steps open"
        );
        assert!(html.contains(r#"style="left:25.000%;width:25.000%;--lane:1""#));
        assert!(
            html.contains(r#"<div class="track" style="--lanes:2">"#),
            "{html}"
        );
        assert!(html.contains(r#"data-running="0""#));
    }

    #[test]
    fn a_backfill_shows_its_phase_in_words_with_its_progress_and_message() {
        assert!(!detail(&view("x")).contains("Backfill"), "none, no section");
        let mut with = view("x");
        with.backfill = Some(Backfill {
            phase: BackfillPhase::Running,
            facts: "1/3 runs done  2026-12-01T05:00:00Z → 2026-12-01T08:00:00Z".into(),
            message: Some("running fire time <2026-12-01T06:00:00Z> (2 of 3)".into()),
        });
        let html = detail(&with);
        assert!(
            html.contains(r#"<section class="backfill" aria-label="Backfill"><h2>Backfill</h2><p><strong class="running">▶ Running</strong> · 1/3 runs done  2026-12-01T05:00:00Z → 2026-12-01T08:00:00Z</p>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<p class="run-message">running fire time &lt;2026-12-01T06:00:00Z&gt; (2 of 3)</p>"#),
            "{html}"
        );
        with.backfill.as_mut().unwrap().phase = BackfillPhase::Refused;
        assert!(detail(&with).contains(r#"<strong class="failed">✗ Refused</strong>"#));
    }

    #[test]
    fn what_users_and_containers_wrote_is_escaped() {
        let html = detail(&view("<script>alert(1)</script>"));
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;503&lt;/b&gt;"), "log lines too");
    }

    #[test]
    fn the_overview_pages_and_says_what_it_could_not_read() {
        let html = overview(&Overview {
            scope: "all namespaces".into(),
            with_namespace: true,
            lines: vec![Line {
                href: "/ns/revops/syncsequence/crm".into(),
                cells: ["revops", "syncsequence/crm", "Failed", "-", "-", "-"]
                    .map(String::from)
                    .to_vec(),
                unreadable: false,
            }],
            errors: vec!["cannot list SyncSequences in all namespaces: forbidden".into()],
            page: 2,
            pages: 3,
            total: 250,
        });
        assert!(
            html.contains(r#"<p class="error" role="alert">✗ cannot list"#),
            "{html}"
        );
        assert!(html.contains(r#"<a href="/ns/revops/syncsequence/crm">syncsequence/crm</a>"#));
        assert!(
            html.contains(r#"href="/?page=1" rel="prev""#)
                && html.contains(r#"href="/?page=3" rel="next""#)
        );
        assert!(html.contains("250 objects in all namespaces"));
    }
}
