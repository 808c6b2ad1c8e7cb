//! The crate's layers, and the check that keeps them: reads every source file under `src/`,
//! collects the modules each one names by path (`crate::…`, `super::…`, `self::…`, in `use`
//! lines and inline), and fails, naming file and line, when a module uses one on a higher
//! floor of [`LAYERS`] or two modules use each other. The same "no two use each other" holds
//! between the files of every folder (`alerts/chat.rs` and `alerts/pagerduty.rs`, say); a
//! folder's `mod.rs` is their parent and may name them.
//!
//! What it does not follow: a name a `mod.rs` re-exports (`super::Report` in an engine file is
//! the engine's own name, not `result.rs`'s), and code declared `#[cfg(test)]` (test modules,
//! in files of their own or inline), which may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors of the crate, ground floor first. A module uses modules on its own floor or
/// below, never above, and never one that uses it back.
const LAYERS: &[&[&str]] = &[
    // Pieces that use no other part of syncseq: text sanitising, HMAC signing, crash points,
    // the order of waiting requests, logging, the resource types, cron maths, the fenced lease.
    &[
        "text",
        "signing",
        "failpoints",
        "admission",
        "telemetry",
        "api",
        "schedule",
        "leader",
    ],
    // Built on the resource types alone: alert semantics and bodies, the metrics, the API
    // client's stack.
    &["alerts", "metrics", "apiclient"],
    // The pure run engine.
    &["engine"],
    // What every part that talks to the API server shares: Events, unreadable objects.
    &["cluster"],
    // What the processes report on and the kubectl plugin.
    &["health", "plugin"],
    // The parts a process runs: the controller, the webhook endpoint, the HTTP server, the
    // command line.
    &["receiver", "controller", "server", "cli"],
    // `lib.rs` lists them and re-exports the entry points.
    &["lib"],
];

/// One source file: its module path (`["controller", "notify", "record"]`; `[]` for lib.rs)
/// and the module paths it names, each with its line.
struct Source {
    file: PathBuf,
    module: Vec<String>,
    names: Vec<(Vec<String>, usize)>,
}

#[test]
fn no_module_uses_a_higher_floor_and_none_use_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (sources, test_only) = read_sources(&root);
    let mut problems = Vec::new();

    let floor = |m: &str| LAYERS.iter().position(|floor| floor.contains(&m));
    let top: BTreeSet<String> = members(&root)
        .into_iter()
        .filter(|m| !test_only.contains(&vec![m.clone()]))
        .collect();
    for m in &top {
        if floor(m).is_none() {
            problems.push(format!("src/{m}: a module no floor of LAYERS names"));
        }
    }
    for m in LAYERS.iter().flat_map(|f| f.iter()) {
        if *m != "lib" && !top.contains(*m) {
            problems.push(format!("LAYERS names `{m}`, which src/ does not have"));
        }
    }

    for s in &sources {
        let from = s.module.first().map_or("lib", String::as_str);
        for (name, line) in &s.names {
            let Some(to) = name.first().filter(|n| top.contains(*n)) else {
                continue;
            };
            if let (Some(a), Some(b)) = (floor(from), floor(to))
                && b > a
            {
                problems.push(format!(
                    "{}:{line}: `{from}` (floor {a}) uses `{to}` (floor {b}), a higher floor",
                    s.file.display()
                ));
            }
        }
    }

    problems.extend(circles(&root, &sources));
    assert!(
        problems.is_empty(),
        "the layers do not hold:\n{}",
        problems.join("\n")
    );
}

/// Pairs of sibling modules that use each other, as `folder: a <-> b` with where each does.
fn circles(root: &Path, sources: &[Source]) -> Vec<String> {
    // For each folder (a module path) and each pair of its members, the first place one uses
    // the other.
    let mut uses: BTreeMap<(Vec<String>, String, String), String> = BTreeMap::new();
    for s in sources {
        for (name, line) in &s.names {
            // The deepest folder both lie in, and the member of it each lies in.
            let common = s
                .module
                .iter()
                .zip(name)
                .take_while(|(a, b)| a == b)
                .count();
            let (Some(from), Some(to)) = (s.module.get(common), name.get(common)) else {
                continue;
            };
            let folder = s.module[..common].to_vec();
            if !members(&folder_dir(root, &folder)).contains(to) {
                continue;
            }
            uses.entry((folder, from.clone(), to.clone()))
                .or_insert_with(|| format!("{}:{line}", s.file.display()));
        }
    }
    let shown = |folder: &[String]| match folder {
        [] => "src".to_string(),
        _ => format!("src/{}", folder.join("/")),
    };
    let mut problems = Vec::new();
    for ((folder, a, b), at) in &uses {
        let Some(back) = uses.get(&(folder.clone(), b.clone(), a.clone())) else {
            continue;
        };
        if a < b {
            problems.push(format!(
                "{}: `{a}` and `{b}` use each other ({at}; {back})",
                shown(folder)
            ));
        }
    }
    problems
}

fn folder_dir(root: &Path, folder: &[String]) -> PathBuf {
    folder.iter().fold(root.to_path_buf(), |dir, m| dir.join(m))
}

/// The modules a folder holds: `name.rs` files (but `mod.rs`, `lib.rs`, `main.rs`) and
/// folders.
fn members(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let module = path.is_dir()
            || path.extension().is_some_and(|e| e == "rs")
                && !["mod", "lib", "main"].contains(&name.as_str());
        if module {
            out.push(name);
        }
    }
    out
}

/// Every library source file outside `#[cfg(test)]` modules, with what it names; and the
/// modules declared `#[cfg(test)]` in files of their own.
fn read_sources(root: &Path) -> (Vec<Source>, Vec<Vec<String>>) {
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut read: Vec<(PathBuf, Vec<String>, String)> = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap();
        if rel == Path::new("main.rs") {
            // The binary: a crate of its own, which sees only the library's public items.
            continue;
        }
        let mut module: Vec<String> = rel
            .iter()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        read.push((Path::new("src").join(rel), module, text));
    }
    let test_only: Vec<Vec<String>> = read
        .iter()
        .flat_map(|(_, module, text)| {
            test_modules(text)
                .into_iter()
                .map(move |m| [module.clone(), vec![m]].concat())
        })
        .collect();
    let sources = read
        .into_iter()
        .filter(|(_, module, _)| !test_only.iter().any(|t| module.starts_with(t)))
        .map(|(file, module, text)| {
            let names = names(&without_tests(&text))
                .into_iter()
                .filter_map(|(path, line)| Some((resolve(&module, path)?, line)))
                .collect();
            Source {
                file,
                module,
                names,
            }
        })
        .collect();
    (sources, test_only)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
}

/// The modules a file declares under `#[cfg(test)]` in files of their own (`mod tests;`).
fn test_modules(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if *line != "#[cfg(test)]" {
            continue;
        }
        let Some(item) = lines[i + 1..].iter().find(|l| !l.starts_with("#[")) else {
            continue;
        };
        if let Some(name) = without_visibility(item)
            .strip_prefix("mod ")
            .and_then(|n| n.strip_suffix(';'))
        {
            out.push(name.to_string());
        }
    }
    out
}

/// The text of a file without its comments and its inline `#[cfg(test)] mod … { … }` blocks
/// (which, formatted by rustfmt, end at the next `}` in the first column), line breaks kept.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut in_tests = false;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if in_tests {
            in_tests = line != "}";
            out.push('\n');
            continue;
        }
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| {
                let next = without_visibility(next.trim());
                next.starts_with("mod ") && next.ends_with('{')
            })
        {
            in_tests = true;
            out.push('\n');
            continue;
        }
        out.push_str(line.split("//").next().unwrap());
        out.push('\n');
    }
    out
}

fn without_visibility(item: &str) -> &str {
    item.trim_start_matches("pub(crate) ")
        .trim_start_matches("pub ")
}

/// The paths `text` names from `crate`, `super` or `self`, as written (`["super", "body",
/// "cut"]`), each with its line; `use a::{b, c::d}` gives one path per leaf.
fn names(text: &str) -> Vec<(Vec<String>, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    for (start, _) in text.char_indices() {
        let rest = &text[start..];
        if !["crate::", "super::", "self::"]
            .iter()
            .any(|p| rest.starts_with(p))
        {
            continue;
        }
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'$')
        {
            continue;
        }
        let line = 1 + text[..start].matches('\n').count();
        let mut paths = Vec::new();
        Cursor { text, at: start }.path(vec![], &mut paths);
        out.extend(paths.into_iter().map(|p| (p, line)));
    }
    out
}

/// Reads one path, with its `{…}` groups, from where it starts.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let found = self.text[self.at..].starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.at += len;
        (len > 0).then(|| rest[..len].to_string())
    }

    fn path(&mut self, mut segments: Vec<String>, out: &mut Vec<Vec<String>>) {
        loop {
            if self.eat("{") {
                while !self.eat("}") {
                    let at = self.at;
                    self.path(segments.clone(), out);
                    if self.eat("as") {
                        self.ident();
                    }
                    // Something this reader does not know, or the end of the text: stop.
                    if !self.eat(",") && self.at == at {
                        break;
                    }
                }
                return;
            }
            if self.eat("*") {
                break;
            }
            match self.ident() {
                Some(segment) => segments.push(segment),
                None => break,
            }
            if !self.text[self.at..].starts_with("::") {
                break;
            }
            self.at += 2;
        }
        out.push(segments);
    }
}

/// A path as named from `module`, as a path from the crate root; `None` for one that climbs
/// above the root.
fn resolve(module: &[String], path: Vec<String>) -> Option<Vec<String>> {
    let mut base = module.to_vec();
    let mut rest = path.into_iter().peekable();
    match rest.peek().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest.next();
        }
        Some("self") => {
            rest.next();
        }
        Some("super") => {
            while rest.peek().is_some_and(|s| s == "super") {
                rest.next();
                base.pop()?;
            }
        }
        _ => return None,
    }
    base.extend(rest);
    Some(base)
}

#[test]
fn the_reader_finds_grouped_and_relative_paths() {
    let text = "use crate::{api::{Sync, Step as S}, engine};\nlet x = super::super::egress::x();\n// crate::hidden\nuse self::inner::*;";
    let got: Vec<(Vec<String>, usize)> = names(&without_tests(text))
        .into_iter()
        .filter_map(|(p, line)| {
            Some((
                resolve(&["controller".into(), "notify".into(), "webhook".into()], p)?,
                line,
            ))
        })
        .collect();
    let want: Vec<(Vec<&str>, usize)> = vec![
        (vec!["api", "Sync"], 1),
        (vec!["api", "Step"], 1),
        (vec!["engine"], 1),
        (vec!["controller", "egress", "x"], 2),
        (vec!["controller", "notify", "webhook", "inner"], 4),
    ];
    let got: Vec<(Vec<&str>, usize)> = got
        .iter()
        .map(|(p, l)| (p.iter().map(String::as_str).collect(), *l))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn test_modules_are_left_out() {
    let text = "#[cfg(test)]\nmod fixtures;\n#[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod world;\nfn f() { crate::a::x() }\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\nfn g() { crate::c::y() }\n";
    assert_eq!(test_modules(text), ["fixtures", "world"]);
    let got: Vec<String> = names(&without_tests(text))
        .into_iter()
        .map(|(p, line)| format!("{}:{line}", p.join("::")))
        .collect();
    assert_eq!(got, ["crate::a::x:6", "crate::c::y:11"]);
}
