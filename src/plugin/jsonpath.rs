//! `-o jsonpath=TEMPLATE`, as kubectl reads it: text with `{EXPR}` holes, where EXPR is a
//! JSONPath relative to the object (`{.lastRun.phase}`), a quoted string (`{"\n"}`), or
//! `{range EXPR}…{end}`, which repeats its body for each match with `.` bound to it.
//!
//! The expressions themselves are RFC 9535 JSONPath (the `serde_json_path` crate): kubectl's
//! `.items[*].name`, `[0]` and `[?(@.phase=="Failed")]` read the same. Several matches print
//! separated by spaces, strings raw and anything else as JSON; a path that matches nothing
//! prints nothing, as with kubectl's default `--allow-missing-template-keys`.

use serde_json::Value;
use serde_json_path::JsonPath;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Path(JsonPath),
    Range(JsonPath, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template(Vec<Node>);

impl PartialEq for Template {
    /// Templates compare by their text (for the parsed command line).
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

fn path(expr: &str) -> Result<JsonPath, String> {
    let expr = expr.trim();
    let full = if expr.starts_with('$') {
        expr.to_string()
    } else if expr.starts_with('.') || expr.starts_with('[') {
        format!("${expr}")
    } else {
        format!("$.{expr}")
    };
    // `$.` alone (kubectl's `{.}`) is the object itself.
    let full = if full == "$." { "$".to_string() } else { full };
    JsonPath::parse(&full).map_err(|e| format!("bad JSONPath {expr:?}: {e}"))
}

fn unquote(s: &str) -> Result<String, String> {
    serde_json::from_str::<String>(s).map_err(|e| format!("bad string literal {s}: {e}"))
}

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(template: &str) -> Result<Self, String> {
        // Each open `range` collects its body; the bottom of the stack is the template.
        let mut stack: Vec<(Option<JsonPath>, Vec<Node>)> = vec![(None, vec![])];
        let mut rest = template;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Text(rest.into()));
                break;
            };
            if open > 0 {
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Text(rest[..open].into()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed {{ in jsonpath template {template:?}"))?;
            let inner = after[..close].trim();
            rest = &after[close + 1..];
            if inner == "end" {
                let (Some(p), body) = stack.pop().expect("stack") else {
                    return Err(format!("{{end}} without {{range}} in {template:?}"));
                };
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Range(p, body));
            } else if let Some(expr) = inner.strip_prefix("range ") {
                stack.push((Some(path(expr)?), vec![]));
            } else if inner.starts_with('"') {
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Text(unquote(inner)?));
            } else if inner.is_empty() {
                return Err(format!("empty {{}} in jsonpath template {template:?}"));
            } else {
                stack
                    .last_mut()
                    .expect("stack")
                    .1
                    .push(Node::Path(path(inner)?));
            }
        }
        if stack.len() > 1 {
            return Err(format!("{{range}} without {{end}} in {template:?}"));
        }
        Ok(Template(stack.pop().expect("stack").1))
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render(nodes: &[Node], value: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let found: Vec<String> = p.query(value).all().into_iter().map(show).collect();
                out.push_str(&found.join(" "));
            }
            Node::Range(p, body) => {
                for item in p.query(value).all() {
                    render(body, item, out);
                }
            }
        }
    }
}

impl Template {
    /// The template filled in from `value`.
    pub fn render(&self, value: &Value) -> String {
        let mut out = String::new();
        render(&self.0, value, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fill(template: &str, value: &Value) -> String {
        template.parse::<Template>().unwrap().render(value)
    }

    #[test]
    fn templates_read_as_kubectl_reads_them() {
        let status = json!({
            "lastRun": {"id": 7, "phase": "Failed", "steps": [
                {"name": "accounts", "phase": "Succeeded", "rowsSynced": 10},
                {"name": "contacts", "phase": "Failed", "message": "HTTP 500"}
            ]},
            "lastRunNumber": 7
        });
        assert_eq!(fill("{.lastRun.phase}", &status), "Failed");
        assert_eq!(
            fill("run {.lastRun.id}: {.lastRun.phase}", &status),
            "run 7: Failed"
        );
        assert_eq!(
            fill("{.lastRun.steps[*].name}", &status),
            "accounts contacts"
        );
        assert_eq!(
            fill(r#"{.lastRun.steps[?(@.phase=="Failed")].message}"#, &status),
            "HTTP 500"
        );
        assert_eq!(
            fill(
                r#"{range .lastRun.steps[*]}{.name}={.phase}{"\n"}{end}"#,
                &status
            ),
            "accounts=Succeeded\ncontacts=Failed\n"
        );
        assert_eq!(fill("{.lastRun.steps[0].rowsSynced}", &status), "10");
        assert_eq!(fill("{.nothing.here}", &status), "");
        assert_eq!(fill("{$.lastRunNumber}", &status), "7");
        assert_eq!(fill("{.}", &json!("x")), "x");
    }

    #[test]
    fn broken_templates_say_what_is_wrong() {
        for (bad, says) in [
            ("{.lastRun", "unclosed"),
            ("{range .a[*]}{.b}", "without {end}"),
            ("{end}", "without {range}"),
            ("{}", "empty"),
            ("{.a[}", "bad JSONPath"),
            (r#"{"unterminated}"#, "bad string literal"),
        ] {
            let err = bad.parse::<Template>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
