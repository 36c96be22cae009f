//! Dependencies point one way: the layer table in `src/lib.rs` ("Layers") is the declared order,
//! and this test holds the code to it. It reads the sources as text (it links nothing of the
//! crate): every `crate::…` path, every `super::…` path that leaves its top-level module, and (in
//! the binary, `src/main.rs` and `src/cli/`) every `toolstream::…` path is an import of the module
//! it names. An import of a module higher in the table fails, naming the file, the line and both
//! layers; so does a loop of imports between modules, peers included.
//!
//! The imports that still run up are listed in [`STILL_RUNNING_UP`], each with what it would take
//! to remove; an entry that no longer matches any import fails too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Imports from a lower layer to a higher one that the code still has: (from, to, why it is
/// still there). Remove an entry when its last import goes.
const STILL_RUNNING_UP: &[(&str, &str, &str)] = &[(
    "pb",
    "transport",
    "the generated servers (build.rs) name `transport::wire::EncodedEvent` and its codec, \
         which would have to live in pb",
)];

/// One import that breaks the declared order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Upward {
    file: String,
    line: usize,
    from: String,
    to: String,
}

impl fmt::Display for Upward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: `{}` imports `{}`, a layer above it",
            self.file, self.line, self.from, self.to
        )
    }
}

/// The declared order: one entry per line of the table, top first; the modules of one line are
/// peers.
struct Layers {
    lines: Vec<Vec<String>>,
}

impl Layers {
    /// Reads the ```text block under the "## Layers" heading of the crate doc: a line is the
    /// module paths (comma-separated), then at least two spaces and what the layer is.
    fn from_crate_doc(lib_rs: &str) -> Layers {
        let doc: Vec<&str> = lib_rs
            .lines()
            .filter_map(|line| line.strip_prefix("//!"))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .collect();
        let heading = doc
            .iter()
            .position(|line| line.trim() == "## Layers")
            .expect("src/lib.rs's crate doc has a \"## Layers\" heading");
        let open = heading
            + doc[heading..]
                .iter()
                .position(|line| line.trim() == "```text")
                .expect("the Layers section has a ```text block");
        let mut lines = Vec::new();
        for line in &doc[open + 1..] {
            if line.trim() == "```" {
                return Layers { lines };
            }
            let names = line.trim().split("  ").next().unwrap_or("");
            let names: Vec<String> = names
                .split(',')
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .collect();
            if !names.is_empty() {
                lines.push(names);
            }
        }
        panic!("the Layers table in src/lib.rs is not closed with ```");
    }

    /// The declared module a module path belongs to (the longest entry that is a prefix of it),
    /// and its line in the table.
    fn place(&self, path: &[String]) -> Option<(String, usize)> {
        let mut best: Option<(String, usize, usize)> = None;
        for (index, line) in self.lines.iter().enumerate() {
            for name in line {
                let segments: Vec<&str> = name.split("::").collect();
                let covers = segments.len() <= path.len()
                    && segments.iter().zip(path).all(|(a, b)| *a == b.as_str());
                if covers
                    && best
                        .as_ref()
                        .is_none_or(|(_, _, len)| segments.len() > *len)
                {
                    best = Some((name.clone(), index, segments.len()));
                }
            }
        }
        best.map(|(name, index, _)| (name, index))
    }
}

/// A source file as the checker sees it: its path (for messages) and text.
struct Source {
    path: String,
    text: String,
}

/// The module path a file defines, and whether it is in the binary crate (where the library is
/// `toolstream::` and `crate::` is the binary).
fn module_of(path: &str) -> Option<(Vec<String>, bool)> {
    let rest = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
    if segments.last().is_some_and(|last| last == "mod") {
        segments.pop();
    }
    if segments == ["lib"] || segments == ["main"] {
        return Some((Vec::new(), segments == ["main"]));
    }
    let binary = segments.first().is_some_and(|first| first == "cli");
    Some((segments, binary))
}

/// The text with comments, string and character literals blanked out (newlines kept, so line
/// numbers stay right).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('#') | Some('"')) && !ident_before(&chars, i) {
            // A raw string: r"…" or r#"…"#.
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&skipped) = chars.get(i) {
                    out.push(blank(skipped));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{7b}'), or else a lifetime.
            let end = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident(chars[i - 1])
}

/// The paths of a use tree or an inline path starting at `chars[i]` (just after `root::`):
/// `engine::Engine`, `{engine::{Engine, RunError}, tools}`, `super::grpc::*`.
fn paths_at(chars: &[char], i: &mut usize) -> Vec<Vec<String>> {
    skip_space(chars, i);
    if chars.get(*i) == Some(&'{') {
        *i += 1;
        let mut all = Vec::new();
        loop {
            skip_space(chars, i);
            match chars.get(*i) {
                None => return all,
                Some('}') => {
                    *i += 1;
                    return all;
                }
                Some(',') => *i += 1,
                Some(_) => {
                    let before = *i;
                    all.extend(paths_at(chars, i));
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    let mut segment = String::new();
    while let Some(&c) = chars.get(*i).filter(|c| is_ident(**c)) {
        segment.push(c);
        *i += 1;
    }
    if segment.is_empty() {
        return vec![Vec::new()];
    }
    let mut after = *i;
    skip_space(chars, &mut after);
    if chars.get(after) == Some(&':') && chars.get(after + 1) == Some(&':') {
        *i = after + 2;
        let mut paths = paths_at(chars, i);
        for path in &mut paths {
            path.insert(0, segment.clone());
        }
        return paths;
    }
    vec![vec![segment]]
}

fn skip_space(chars: &[char], i: &mut usize) {
    while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
        *i += 1;
    }
}

/// Every import of another module in a file: (line, absolute module path in the library).
fn imports(file: &Source) -> Vec<(usize, Vec<String>)> {
    let Some((module, binary)) = module_of(&file.path) else {
        return Vec::new();
    };
    let code = code_only(&file.text);
    let chars: Vec<char> = code.chars().collect();
    let mut line = 1;
    let mut found = Vec::new();
    // The inline modules (`mod tests { … }`) open at this point, with the brace depth each
    // opened at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => line += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if inline.last().is_some_and(|(_, opened)| *opened == depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        if !is_ident(c) || ident_before(&chars, i) {
            i += 1;
            continue;
        }
        let start = i;
        while chars.get(i).is_some_and(|c| is_ident(*c)) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if word == "mod" {
            let mut j = i;
            skip_space(&chars, &mut j);
            let name_start = j;
            while chars.get(j).is_some_and(|c| is_ident(*c)) {
                j += 1;
            }
            let name: String = chars[name_start..j].iter().collect();
            skip_space(&chars, &mut j);
            if !name.is_empty() && chars.get(j) == Some(&'{') {
                inline.push((name, depth));
            }
            continue;
        }
        let root_is = |word: &str| word == "crate" || word == "super" || word == "toolstream";
        let preceded_by_path = start >= 2 && chars[start - 1] == ':' && chars[start - 2] == ':';
        if !root_is(&word) || preceded_by_path || (word == "toolstream" && !binary) {
            continue;
        }
        let mut j = i;
        skip_space(&chars, &mut j);
        if !(chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':')) {
            continue;
        }
        j += 2;
        let start_line = line;
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        for tail in paths_at(&chars, &mut j) {
            let path: Vec<String> = std::iter::once(word.clone()).chain(tail).collect();
            if let Some(absolute) = resolve(&path, &here, binary) {
                found.push((start_line, absolute));
            }
        }
        // Count the newlines the use tree spanned.
        line += chars[i..j].iter().filter(|c| **c == '\n').count();
        i = j;
    }
    found
}

/// A path as a module path of the library, from the module `here`; `None` for a path that
/// stays in the binary's own modules or names nothing.
fn resolve(path: &[String], here: &[String], binary: bool) -> Option<Vec<String>> {
    let mut rest = path;
    let mut base: Vec<String> = match rest.first().map(String::as_str) {
        Some("toolstream") => {
            rest = &rest[1..];
            return Some(rest.to_vec());
        }
        Some("crate") => {
            rest = &rest[1..];
            Vec::new()
        }
        _ => here.to_vec(),
    };
    while rest.first().is_some_and(|segment| segment == "super") {
        base.pop();
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|segment| segment == "self") {
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    // In the binary, `crate::` is the binary: its modules are cli's own.
    if binary && base.first().is_none_or(|first| first != "cli") {
        return None;
    }
    (!base.is_empty()).then_some(base)
}

/// What the checker found in a set of sources.
struct Findings {
    upward: Vec<Upward>,
    /// Import edges between declared modules: (from, to) → first (file, line).
    edges: BTreeMap<(String, String), (String, usize)>,
}

fn check(layers: &Layers, files: &[Source], generated_by: &[(&str, Source)]) -> Findings {
    let mut findings = Findings {
        upward: Vec::new(),
        edges: BTreeMap::new(),
    };
    let mut record = |file: &str, line: usize, from: (String, usize), to: (String, usize)| {
        if from.0 == to.0 {
            return;
        }
        findings
            .edges
            .entry((from.0.clone(), to.0.clone()))
            .or_insert_with(|| (file.to_owned(), line));
        if to.1 < from.1 {
            findings.upward.push(Upward {
                file: file.to_owned(),
                line,
                from: from.0,
                to: to.0,
            });
        }
    };
    for file in files {
        let Some((module, _)) = module_of(&file.path) else {
            continue;
        };
        let Some(from) = layers.place(&module) else {
            continue;
        };
        for (line, target) in imports(file) {
            if let Some(to) = layers.place(&target) {
                record(&file.path, line, from.clone(), to);
            }
        }
    }
    // Code a build script generates lands in a module of its own (`pb`): the `crate::…` paths the
    // script writes into it are that module's imports.
    for (module, script) in generated_by {
        let from = layers
            .place(&[module.to_string()])
            .expect("the generated module is in the layer table");
        for (index, text) in script.text.lines().enumerate() {
            let chars: Vec<char> = text.chars().collect();
            let root: Vec<char> = "crate::".chars().collect();
            for at in 0..chars.len() {
                if chars[at..].starts_with(&root) && !ident_before(&chars, at) {
                    for tail in paths_at(&chars, &mut (at + root.len())) {
                        if let Some(to) = layers.place(&tail) {
                            record(&script.path, index + 1, from.clone(), to);
                        }
                    }
                }
            }
        }
    }
    findings.upward.sort();
    findings.upward.dedup();
    findings
}

/// The loops among declared modules, leaving out the edges in `allowed` (those are reported as
/// imports running up): each loop as its modules in order, first import's file and line.
fn cycles(
    edges: &BTreeMap<(String, String), (String, usize)>,
    allowed: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        if !allowed.contains(&(from.clone(), to.clone())) {
            next.entry(from).or_default().push(to);
        }
    }
    let mut found = BTreeSet::new();
    for &start in next.keys() {
        // A shortest way from `start` back to itself, by breadth-first search.
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for &to in next.get(at).map(Vec::as_slice).unwrap_or(&[]) {
                if to == start {
                    let mut lap = vec![at];
                    while let Some(&before) = came_from.get(lap[lap.len() - 1]) {
                        lap.push(before);
                    }
                    lap.reverse();
                    // Name each loop once, from its smallest module.
                    let smallest = (0..lap.len()).min_by_key(|&k| lap[k]).unwrap_or(0);
                    lap.rotate_left(smallest);
                    let steps: Vec<String> = lap
                        .iter()
                        .zip(lap.iter().cycle().skip(1))
                        .map(|(a, b)| {
                            let (file, line) = &edges[&(a.to_string(), b.to_string())];
                            format!("{a} -> {b} ({file}:{line})")
                        })
                        .collect();
                    found.insert(steps.join(", "));
                    queue.clear();
                    break;
                }
                if to != start && !came_from.contains_key(to) {
                    came_from.insert(to, at);
                    queue.push_back(to);
                }
            }
        }
    }
    found.into_iter().collect()
}

fn rust_files(dir: &Path, root: &Path, into: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, root, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            let relative = path.strip_prefix(root).expect("under the crate root");
            into.push(Source {
                path: relative.to_string_lossy().replace('\\', "/"),
                text,
            });
        }
    }
}

fn read(root: &Path, path: &str) -> Source {
    Source {
        path: path.to_owned(),
        text: std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|error| panic!("reading {path}: {error}")),
    }
}

/// The top-level modules `src/lib.rs` declares, and `cli` (the binary's).
fn top_level_modules(lib_rs: &str) -> Vec<String> {
    let mut names: Vec<String> = code_only(lib_rs)
        .lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
            line.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_owned)
        })
        .collect();
    names.push("cli".to_owned());
    names
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib_rs = read(root, "src/lib.rs");
    let layers = Layers::from_crate_doc(&lib_rs.text);
    let declared: BTreeSet<&str> = layers.lines.iter().flatten().map(String::as_str).collect();
    let undeclared: Vec<String> = top_level_modules(&lib_rs.text)
        .into_iter()
        .filter(|name| !declared.contains(name.as_str()))
        .collect();
    assert!(
        undeclared.is_empty(),
        "modules missing from the Layers table in src/lib.rs: {undeclared:?}; give each its line"
    );

    let mut files = Vec::new();
    rust_files(&root.join("src"), root, &mut files);
    let findings = check(&layers, &files, &[("pb", read(root, "build.rs"))]);

    let allowed: BTreeSet<(String, String)> = STILL_RUNNING_UP
        .iter()
        .map(|(from, to, _)| (from.to_string(), to.to_string()))
        .collect();
    let new: Vec<String> = findings
        .upward
        .iter()
        .filter(|found| !allowed.contains(&(found.from.clone(), found.to.clone())))
        .map(Upward::to_string)
        .collect();
    assert!(
        new.is_empty(),
        "imports that run back up (src/lib.rs, \"Layers\", gives the order):\n{}",
        new.join("\n")
    );
    let gone: Vec<&(&str, &str, &str)> = STILL_RUNNING_UP
        .iter()
        .filter(|(from, to, _)| {
            !findings
                .upward
                .iter()
                .any(|found| found.from == *from && found.to == *to)
        })
        .collect();
    assert!(
        gone.is_empty(),
        "these imports no longer run up: take them out of STILL_RUNNING_UP: {gone:?}"
    );
    let loops = cycles(&findings.edges, &allowed);
    assert!(
        loops.is_empty(),
        "import cycles between modules:\n{}",
        loops.join("\n")
    );
}

/// The checker itself, on planted sources: it must find each kind of import that runs up, and
/// each loop, and nothing in comments, strings or a test module's own `super::`.
#[test]
fn the_checker_finds_planted_violations() {
    let layers = Layers::from_crate_doc(
        "//! ## Layers\n//!\n//! ```text\n//! web, transport, telemetry  faces\n//! engine  runs\n\
         //! telemetry::traces, tools  leaves\n//! cli  (planted at the bottom)\n//! ```\n",
    );
    let source = |path: &str, text: &str| Source {
        path: path.to_owned(),
        text: text.to_owned(),
    };
    let files = [
        source(
            "src/tools/a.rs",
            "use crate::tools::Tool; // crate::web::Nothing in a comment\n\
             const NOTE: &str = \"crate::web::Nor in a string\";\n\
             use crate::{\n    telemetry::traces::inject,\n    engine::{Engine, RunError},\n};\n",
        ),
        source(
            "src/tools/nested/b.rs",
            "fn f() {\n    super::super::super::transport::status();\n}\n\
             mod tests {\n    use super::super::super::engine::Tool;\n}\n",
        ),
        source("src/telemetry/traces.rs", "use super::metrics::Metrics;\n"),
        source("src/engine/mod.rs", "use crate::tools::Tool;\n"),
        source("src/web/mod.rs", "use crate::transport::Service;\n"),
        source(
            "src/transport/mod.rs",
            "pub fn f() { crate::web::route(); }\n",
        ),
        source(
            "src/cli/mod.rs",
            "use toolstream::engine::Engine;\nuse crate::cli::output;\n",
        ),
    ];
    let generated = source("build.rs", "let codec = \"crate::web::Codec\";\n");
    let findings = check(&layers, &files, &[("engine", generated)]);
    let upward: Vec<String> = findings.upward.iter().map(Upward::to_string).collect();
    assert_eq!(
        upward,
        [
            "build.rs:1: `engine` imports `web`, a layer above it",
            "src/cli/mod.rs:1: `cli` imports `engine`, a layer above it",
            "src/telemetry/traces.rs:1: `telemetry::traces` imports `telemetry`, a layer above it",
            "src/tools/a.rs:3: `tools` imports `engine`, a layer above it",
            "src/tools/nested/b.rs:2: `tools` imports `transport`, a layer above it",
        ]
    );
    assert_eq!(
        cycles(&findings.edges, &BTreeSet::new()),
        [
            "engine -> tools (src/engine/mod.rs:1), tools -> engine (src/tools/a.rs:3)",
            "transport -> web (src/transport/mod.rs:1), web -> transport (src/web/mod.rs:1)",
        ]
    );
    // An allowed import is left out of the loops: it is reported as running up instead.
    let allowed = BTreeSet::from([("tools".to_owned(), "engine".to_owned())]);
    assert_eq!(cycles(&findings.edges, &allowed).len(), 1);
}
