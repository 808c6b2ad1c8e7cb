//! A sequence's steps as a graph: each step's parents, and `kubectl syncseq graph` as Mermaid
//! or Graphviz DOT. Pure functions of the spec's steps and, optionally, one run.
//!
//! Each step's parents are the engine's own reading of the spec (`engine::graph::parents`).

use crate::api::{RunStatus, RunWhen, Step, StepPhase};
use crate::engine::graph::parents;

/// The parents of the step named `name`, for a table cell: `a, b`, `-` for a root, and
/// `(not in spec)` for a step of a run that the spec no longer has.
pub(crate) fn after(steps: &[Step], name: &str) -> String {
    match steps.iter().position(|s| s.name == name) {
        Some(i) => match parents(steps, i) {
            p if p.is_empty() => "-".into(),
            p => p.join(", "),
        },
        None => "(not in spec)".into(),
    }
}

/// Output formats of `kubectl syncseq graph` (public: a field of the public [`super::PluginCommand`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

/// Fill colours by phase, the dashboard's palette; a step the run has not reached is white.
fn fill(phase: StepPhase) -> &'static str {
    match phase {
        StepPhase::Pending => "#ffffff",
        StepPhase::Waiting => "#fff3bf",
        StepPhase::Running => "#d0ebff",
        StepPhase::Succeeded => "#d3f9d8",
        StepPhase::Failed => "#ffc9c9",
        StepPhase::Skipped => "#e9ecef",
        StepPhase::Cancelled => "#ced4da",
    }
}

/// One node: its id (by position, so that no name needs quoting there) and its label lines.
struct Node {
    id: String,
    lines: Vec<String>,
    phase: Option<StepPhase>,
}

/// One edge, parent to child, labelled with the child's `runWhen` unless it is the default.
struct Edge {
    from: String,
    to: String,
    label: Option<&'static str>,
}

fn nodes_and_edges(steps: &[Step], run: Option<&RunStatus>) -> (Vec<Node>, Vec<Edge>) {
    let id = |name: &str| {
        steps
            .iter()
            .position(|s| s.name == name)
            .map(|i| format!("s{i}"))
    };
    let nodes = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let status = run.and_then(|r| r.steps.iter().find(|st| st.name == s.name));
            let mut lines = vec![s.name.clone()];
            if s.sync_ref.name != s.name {
                lines.push(format!("sync {}", s.sync_ref.name));
            }
            if let Some(st) = status {
                // Written out as well as coloured: a colour alone says nothing to some readers.
                lines.push(format!("{:?}", st.phase));
            }
            Node {
                id: format!("s{i}"),
                lines,
                phase: status.map(|st| st.phase),
            }
        })
        .collect();
    let mut edges = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let label = match s.run_when {
            RunWhen::AllSucceeded => None,
            RunWhen::AllFinished => Some("AllFinished"),
            RunWhen::AnyFailed => Some("AnyFailed"),
        };
        // The API server refuses a dependsOn naming no earlier step; an edge to nowhere
        // (a spec written before that rule) is left out rather than drawn wrong.
        for parent in parents(steps, i).into_iter().filter_map(id) {
            edges.push(Edge {
                from: parent,
                to: format!("s{i}"),
                label,
            });
        }
    }
    (nodes, edges)
}

/// Mermaid text in a quoted label: entity codes for what would end or reinterpret it.
fn mermaid_text(s: &str) -> String {
    s.replace('#', "#35;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// DOT text in a quoted string.
fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The graph of `steps` (the spec's), coloured by the phases of `run` when given.
pub(crate) fn render(
    name: &str,
    steps: &[Step],
    run: Option<&RunStatus>,
    format: GraphFormat,
) -> String {
    let (nodes, edges) = nodes_and_edges(steps, run);
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for n in &nodes {
                let label: Vec<String> = n.lines.iter().map(|l| mermaid_text(l)).collect();
                out.push_str(&format!("  {}[\"{}\"]\n", n.id, label.join("<br/>")));
            }
            for e in &edges {
                match e.label {
                    Some(l) => out.push_str(&format!("  {} -->|\"{l}\"| {}\n", e.from, e.to)),
                    None => out.push_str(&format!("  {} --> {}\n", e.from, e.to)),
                }
            }
            let mut phases: Vec<StepPhase> = nodes.iter().filter_map(|n| n.phase).collect();
            phases.sort_by_key(|p| *p as u8);
            phases.dedup();
            for p in phases {
                out.push_str(&format!(
                    "  classDef {p:?} fill:{},stroke:#495057\n",
                    fill(p)
                ));
                let ids: Vec<&str> = nodes
                    .iter()
                    .filter(|n| n.phase == Some(p))
                    .map(|n| n.id.as_str())
                    .collect();
                out.push_str(&format!("  class {} {p:?}\n", ids.join(",")));
            }
        }
        GraphFormat::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n", dot_text(name)));
            out.push_str("  rankdir=LR;\n");
            out.push_str("  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\"];\n");
            for n in &nodes {
                let label = dot_text(&n.lines.join("\n"));
                match n.phase {
                    Some(p) => out.push_str(&format!(
                        "  {} [label=\"{label}\", fillcolor=\"{}\"];\n",
                        n.id,
                        fill(p)
                    )),
                    None => out.push_str(&format!("  {} [label=\"{label}\"];\n", n.id)),
                }
            }
            for e in &edges {
                match e.label {
                    Some(l) => {
                        out.push_str(&format!("  {} -> {} [label=\"{l}\"];\n", e.from, e.to))
                    }
                    None => out.push_str(&format!("  {} -> {};\n", e.from, e.to)),
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RunPhase, TriggerKind};
    use crate::plugin::fixtures::step;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn spec(name: &str, depends_on: Option<&[&str]>, run_when: RunWhen) -> Step {
        Step {
            depends_on: depends_on.map(|d| d.iter().map(|s| s.to_string()).collect()),
            run_when,
            ..crate::engine::fixtures::step(name)
        }
    }

    fn linear() -> Vec<Step> {
        ["accounts", "workspaces", "contacts"]
            .into_iter()
            .map(|n| spec(n, None, RunWhen::AllSucceeded))
            .collect()
    }

    /// design.md §1: accounts → workspaces ‖ deals → contacts, a second root, a cleanup step.
    fn tree() -> Vec<Step> {
        use RunWhen::*;
        vec![
            spec("accounts", None, AllSucceeded),
            spec("workspaces", Some(&["accounts"]), AllSucceeded),
            spec("deals", Some(&["accounts"]), AllSucceeded),
            spec("contacts", Some(&["workspaces", "deals"]), AllSucceeded),
            spec("audit", Some(&[]), AllSucceeded),
            spec("summary", Some(&["contacts"]), AllFinished),
            spec("undo", Some(&["deals"]), AnyFailed),
        ]
    }

    #[test]
    fn parents_are_depends_on_else_the_step_listed_before() {
        let cases: [(Vec<Step>, Vec<&str>); 2] = [
            (linear(), vec!["-", "accounts", "workspaces"]),
            (
                tree(),
                vec![
                    "-",
                    "accounts",
                    "accounts",
                    "workspaces, deals",
                    "-",
                    "contacts",
                    "deals",
                ],
            ),
        ];
        for (steps, want) in cases {
            let got: Vec<String> = steps.iter().map(|s| after(&steps, &s.name)).collect();
            assert_eq!(got, want);
        }
        assert_eq!(after(&linear(), "deals"), "(not in spec)");
    }

    #[test]
    fn graphs_render_as_mermaid_and_dot() {
        struct Case {
            what: &'static str,
            steps: Vec<Step>,
            mermaid_edges: &'static [&'static str],
            dot_edges: &'static [&'static str],
        }
        let cases = [
            Case {
                what: "linear",
                steps: linear(),
                mermaid_edges: &["  s0 --> s1\n", "  s1 --> s2\n"],
                dot_edges: &["  s0 -> s1;\n", "  s1 -> s2;\n"],
            },
            Case {
                what: "diamond, second root, runWhen labels",
                steps: tree(),
                mermaid_edges: &[
                    "  s0 --> s1\n",
                    "  s0 --> s2\n",
                    "  s1 --> s3\n",
                    "  s2 --> s3\n",
                    "  s3 -->|\"AllFinished\"| s5\n",
                    "  s2 -->|\"AnyFailed\"| s6\n",
                ],
                dot_edges: &[
                    "  s0 -> s1;\n",
                    "  s0 -> s2;\n",
                    "  s1 -> s3;\n",
                    "  s2 -> s3;\n",
                    "  s3 -> s5 [label=\"AllFinished\"];\n",
                    "  s2 -> s6 [label=\"AnyFailed\"];\n",
                ],
            },
        ];
        for case in cases {
            let mermaid = render("crm", &case.steps, None, GraphFormat::Mermaid);
            let dot = render("crm", &case.steps, None, GraphFormat::Dot);
            assert!(mermaid.starts_with("flowchart LR\n"), "{}", case.what);
            assert!(dot.starts_with("digraph \"crm\" {\n") && dot.ends_with("}\n"));
            let arrows = |text: &str, arrow: &str| text.matches(arrow).count();
            assert_eq!(
                arrows(&mermaid, "-->"),
                case.mermaid_edges.len(),
                "{}: {mermaid}",
                case.what
            );
            assert_eq!(arrows(&dot, " -> "), case.dot_edges.len(), "{}", case.what);
            for e in case.mermaid_edges {
                assert!(mermaid.contains(e), "{}: {e:?} in {mermaid}", case.what);
            }
            for e in case.dot_edges {
                assert!(dot.contains(e), "{}: {e:?} in {dot}", case.what);
            }
            for (i, s) in case.steps.iter().enumerate() {
                assert!(mermaid.contains(&format!("  s{i}[\"{}\"]\n", s.name)));
                assert!(dot.contains(&format!("  s{i} [label=\"{}\"];\n", s.name)));
            }
            // The second root has no edge into it.
            if case.steps.iter().any(|s| s.name == "audit") {
                assert!(!mermaid.contains("> s4") && !dot.contains("> s4"));
            }
        }
    }

    #[test]
    fn a_run_colours_its_steps_and_a_different_sync_is_named() {
        let mut steps = tree();
        steps[1].sync_ref.name = "crm-workspaces".into();
        let run = RunStatus {
            id: 7,
            trigger: TriggerKind::Manual,
            retry_of: None,
            upstream: None,
            scheduled_time: None,
            start_time: Time("2026-05-01T10:00:00Z".parse().unwrap()),
            completion_time: None,
            phase: RunPhase::Running,
            stopped_by: None,
            progress: "3/7".into(),
            steps: vec![
                step("accounts", StepPhase::Succeeded),
                step("workspaces", StepPhase::Running),
                step("deals", StepPhase::Failed),
                step("contacts", StepPhase::Skipped),
                step("audit", StepPhase::Succeeded),
            ],
            message: None,
        };
        let mermaid = render("crm", &steps, Some(&run), GraphFormat::Mermaid);
        assert!(
            mermaid.contains("  s1[\"workspaces<br/>sync crm-workspaces<br/>Running\"]\n"),
            "{mermaid}"
        );
        assert!(mermaid.contains("  class s0,s4 Succeeded\n"), "{mermaid}");
        assert!(
            mermaid.contains("  classDef Failed fill:#ffc9c9"),
            "{mermaid}"
        );
        // Steps the run has not recorded (added since it started) keep no class.
        assert!(mermaid.contains("  s5[\"summary\"]\n") && !mermaid.contains("s5 "));
        let dot = render("crm", &steps, Some(&run), GraphFormat::Dot);
        assert!(dot.contains(
            "  s1 [label=\"workspaces\\nsync crm-workspaces\\nRunning\", fillcolor=\"#d0ebff\"];\n"
        ));
        assert!(dot.contains("  s5 [label=\"summary\"];\n"), "{dot}");
    }

    #[test]
    fn names_cannot_break_out_of_their_quotes() {
        // The API allows only DNS labels, but status and old objects are anyone's text.
        let steps = vec![spec("a\"]; x[\"<b>#", None, RunWhen::AllSucceeded)];
        let mermaid = render("x", &steps, None, GraphFormat::Mermaid);
        assert_eq!(
            mermaid,
            "flowchart LR\n  s0[\"a#quot;]; x[#quot;#lt;b#gt;#35;\"]\n"
        );
        let dot = render("n\"}\\", &steps, None, GraphFormat::Dot);
        assert!(dot.starts_with("digraph \"n\\\"}\\\\\" {\n"), "{dot}");
        assert!(
            dot.contains("  s0 [label=\"a\\\"]; x[\\\"<b>#\"];\n"),
            "{dot}"
        );
    }
}
