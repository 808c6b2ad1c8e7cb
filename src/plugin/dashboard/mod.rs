//! `kubectl syncseq dashboard`: a read-only page of the namespace's sequences and Syncs, served
//! on localhost with the user's own kubeconfig, so it shows exactly what their RBAC lets them
//! read (no endpoint in the cluster, nothing new to secure). The overview lists every object
//! with what `kubectl syncseq status` says of it; an object's page draws its recent runs on one
//! time axis from its Jobs, with the Events of those runs and the log tail of a failed step,
//! and reloads when a watch sees the object or its Jobs change.

mod page;
mod timeline;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Api;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};

use super::client::{Cluster, api_error};
use super::logs;
use super::render;
use super::target::{Kind, Runnable, Target};
use crate::api::{StepPhase, Sync, SyncSequence, labels};

/// Objects per overview page: a thousand sequences are ten pages, each rendered at once.
const PAGE_SIZE: usize = 100;
/// Events shown on an object's page, newest first.
const EVENTS_SHOWN: usize = 50;
/// Log lines shown of a failed step.
const LOG_LINES: i64 = 40;

struct Dashboard {
    cluster: Cluster,
    all_namespaces: bool,
}

/// Serves the dashboard on 127.0.0.1:`port` (0: any free port) until Ctrl-C.
pub(crate) async fn serve(cluster: Cluster, all_namespaces: bool, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(overview))
        .route("/ns/{namespace}/{kind}/{name}", get(detail))
        .route("/ns/{namespace}/{kind}/{name}/changes", get(changes))
        .with_state(Arc::new(Dashboard {
            cluster,
            all_namespaces,
        }));
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "syncseq dashboard: http://{address}/ (read-only, as your kubeconfig's user; Ctrl-C stops it)"
        );
        let _ = out.flush();
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

/// The objects in scope, and what could not be read of it.
async fn objects(d: &Dashboard) -> (Vec<Runnable>, String, Vec<String>) {
    let ns = &d.cluster.namespace;
    let mut errors = Vec::new();
    if d.all_namespaces {
        match d.cluster.list_all(true).await {
            Ok(all) => return (all, "all namespaces".into(), errors),
            // Whoever may read only some namespaces sees an error for the others, not their
            // data, and then the namespace their kubeconfig selects.
            Err(e) => errors.push(format!(
                "cannot list SyncSequences and Syncs in all namespaces: {e:#}. Showing namespace {ns} only."
            )),
        }
    }
    match d.cluster.list_all(false).await {
        Ok(some) => (some, format!("namespace {ns}"), errors),
        Err(e) => {
            errors.push(format!(
                "cannot list SyncSequences and Syncs in namespace {ns}: {e:#}"
            ));
            (Vec::new(), format!("namespace {ns}"), errors)
        }
    }
}

fn href(obj: &Runnable) -> String {
    format!(
        "/ns/{}/{}/{}",
        obj.namespace,
        obj.target.kind.short(),
        obj.target.name
    )
}

async fn overview(State(d): State<Arc<Dashboard>>, Query(q): Query<PageQuery>) -> Html<String> {
    let now = Timestamp::now();
    let (all, scope, errors) = objects(&d).await;
    let with_namespace = d.all_namespaces && scope == "all namespaces";
    let pages = all.len().div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let lines = all
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|o| page::Line {
            href: href(o),
            cells: render::overview_row(o, with_namespace, now),
            unreadable: o.unreadable.is_some(),
        })
        .collect();
    Html(page::overview(&page::Overview {
        scope,
        with_namespace,
        lines,
        errors,
        page,
        pages,
        total: all.len(),
    }))
}

fn error_page(status: StatusCode, message: String) -> Response {
    (status, Html(page::error(&message))).into_response()
}

fn target_of(kind: &str, name: &str) -> Result<Target, String> {
    Target::parse(&format!("{kind}/{name}")).map_err(|e| format!("no such page: {e}"))
}

/// The Jobs that may be the object's (its owner label; the timeline keeps those it owns).
async fn jobs_of(cluster: &Cluster, target: &Target) -> Result<Vec<Job>, String> {
    let label = match target.kind {
        Kind::SyncSequence => labels::SEQUENCE,
        Kind::Sync => labels::SYNC,
    };
    Api::<Job>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default().labels(&format!("{label}={}", target.name)))
        .await
        .map(|l| l.items)
        .map_err(|e| format!("cannot list its Jobs: {:#}", api_error(e)))
}

/// The object's Events from `since` on, newest first.
async fn events_of(
    cluster: &Cluster,
    target: &Target,
    since: Timestamp,
) -> Result<Vec<page::Event>, String> {
    let kind = match target.kind {
        Kind::SyncSequence => "SyncSequence",
        Kind::Sync => "Sync",
    };
    let list = Api::<K8sEvent>::namespaced(cluster.client.clone(), &cluster.namespace)
        .list(&ListParams::default().fields(&format!("regarding.name={}", target.name)))
        .await
        .map_err(|e| format!("cannot list its Events: {:#}", api_error(e)))?;
    let mut events: Vec<(Timestamp, page::Event)> = list
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some(kind))
        .filter_map(|e| {
            let at = e.event_time.as_ref().map(|t| t.0).or(e
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0))?;
            (at >= since).then(|| {
                (
                    at,
                    page::Event {
                        time: at.strftime("%H:%M:%S").to_string(),
                        warning: e.type_.as_deref() == Some("Warning"),
                        reason: e.reason.unwrap_or_default(),
                        note: e.note.unwrap_or_default(),
                    },
                )
            })
        })
        .collect();
    events.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(events
        .into_iter()
        .take(EVENTS_SHOWN)
        .map(|(_, e)| e)
        .collect())
}

/// The log tail of the last run's failed step, if it has one.
async fn failed_log(cluster: &Cluster, obj: &Runnable) -> Option<page::LogTail> {
    let failed = match obj.target.kind {
        Kind::SyncSequence => obj
            .last_run
            .as_ref()
            .is_some_and(|r| r.steps.iter().any(|s| s.phase == StepPhase::Failed)),
        Kind::Sync => obj
            .last_job
            .as_ref()
            .is_some_and(|j| j.outcome == Some(StepPhase::Failed)),
    };
    if !failed {
        return None;
    }
    let choice = logs::choose(obj, None, None).ok()?;
    let text = logs::tail(cluster, obj, &choice, LOG_LINES)
        .await
        .map_err(|e| format!("{e:#}"));
    Some(page::LogTail {
        step: choice.step,
        text,
    })
}

async fn detail(
    State(d): State<Arc<Dashboard>>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Response {
    let target = match target_of(&kind, &name) {
        Ok(t) => t,
        Err(e) => return error_page(StatusCode::NOT_FOUND, e),
    };
    let cluster = Cluster {
        client: d.cluster.client.clone(),
        namespace: namespace.clone(),
    };
    let obj = match cluster.get(&target).await {
        Ok(obj) => obj,
        Err(e) => {
            return error_page(
                StatusCode::NOT_FOUND,
                format!(
                    "cannot read {}/{name} in namespace {namespace}: {e:#}",
                    target.kind.short()
                ),
            );
        }
    };
    let now = Timestamp::now();
    let mut notes = Vec::new();
    let jobs = jobs_of(&cluster, &target).await.unwrap_or_else(|e| {
        notes.push(e);
        Vec::new()
    });
    let timeline = timeline::timeline(&obj, &jobs, now);
    let events = events_of(&cluster, &target, timeline.t0)
        .await
        .unwrap_or_else(|e| {
            notes.push(e);
            Vec::new()
        });
    let log = failed_log(&cluster, &obj).await;
    let cells = render::overview_row(&obj, false, now);
    let summary = ["Last result", "Last success", "Now", "Next schedule"]
        .into_iter()
        .zip(cells.into_iter().skip(1))
        .chain(notes.into_iter().map(|n| ("Could not read", n)))
        .collect();
    let reference = format!("{}/{}", target.kind.short(), target.name);
    Html(page::detail(&page::Detail {
        changes: format!(
            "/ns/{namespace}/{}/{}/changes",
            target.kind.short(),
            target.name
        ),
        namespace,
        reference,
        summary,
        backfill: obj.book.backfill.as_deref().map(|bf| page::Backfill {
            phase: bf.phase,
            facts: render::backfill_facts(bf, now),
            message: bf.message.clone(),
        }),
        timeline,
        now,
        events,
        log,
    }))
    .into_response()
}

/// Server-sent events: `changed` whenever the object or one of its Jobs changes, seen by
/// metadata-only watches (any change moves an object's resourceVersion), so that the page
/// reloads from a watch instead of polling.
async fn changes(
    State(d): State<Arc<Dashboard>>,
    Path((namespace, kind, name)): Path<(String, String, String)>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let target = target_of(&kind, &name).map_err(|e| error_page(StatusCode::NOT_FOUND, e))?;
    let client = d.cluster.client.clone();
    let by_name = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
    let (object, label) = match target.kind {
        Kind::SyncSequence => (
            watcher(
                Api::<PartialObjectMeta<SyncSequence>>::namespaced(client.clone(), &namespace),
                by_name,
            )
            .default_backoff()
            .map(|e| e.map(|e| changed(&e)))
            .boxed(),
            labels::SEQUENCE,
        ),
        Kind::Sync => (
            watcher(
                Api::<PartialObjectMeta<Sync>>::namespaced(client.clone(), &namespace),
                by_name,
            )
            .default_backoff()
            .map(|e| e.map(|e| changed(&e)))
            .boxed(),
            labels::SYNC,
        ),
    };
    let jobs = watcher(
        Api::<PartialObjectMeta<Job>>::namespaced(client, &namespace),
        watcher::Config::default().labels(&format!("{label}={}", target.name)),
    )
    .default_backoff()
    .map(|e| e.map(|e| changed(&e)));
    let stream = futures::stream::select(object, jobs.boxed())
        .filter_map(|e| std::future::ready(matches!(e, Ok(true)).then_some(())))
        .map(|()| Ok(SseEvent::default().event("changed").data("")));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Whether a watch event is a change (not the first list the watch starts with).
fn changed<K>(event: &watcher::Event<K>) -> bool {
    matches!(event, watcher::Event::Apply(_) | watcher::Event::Delete(_))
}
