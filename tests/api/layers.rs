//! The crate's layers, read from its source: every module's imports (`use` declarations
//! and `crate::…` paths, test code left out) form a graph with no cycle, and between
//! the top-level modules every arrow runs down the order DESIGN.md draws:
//! `startup → http → actors → remote / probe / db → domain`. Tools beside the runtime
//! (the fleet simulator) import only what [`TOOLS`] lists, and nothing but `startup`
//! imports them (the binary and the benchmarks are outside the library).
//!
//! `cargo modules dependencies --lib --no-fns --no-types --no-traits --layout dot`
//! (crate `cargo-modules`) draws the same module graph; this test keeps it true
//! without that tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules from the top down; a module may import only modules of a lower
/// rank (within itself, anything without a cycle).
const LAYERS: &[(&str, u32)] = &[
    ("bench", 11),
    ("startup", 10),
    ("config", 9),
    ("cli", 8),
    ("error", 7),
    ("http", 6),
    ("actors", 5),
    ("fleet", 5),
    ("agent", 4),
    ("remote", 4),
    ("auth", 3),
    ("health", 3),
    ("probe", 3),
    ("db", 2),
    ("metrics", 2),
    ("domain", 1),
];

/// Top-level tools beside the runtime and the only top-level modules each may import.
/// A rank alone would let a tool reach anything below it, and let anything above it
/// reach the tool.
const TOOLS: &[(&str, &[&str])] = &[("fleet", &["agent", "metrics", "domain"])];

/// The one module that may import a tool: it builds every process.
const TOOL_USER: &str = "startup";

/// A module path under the crate root: `["actors", "scheduler", "start"]`.
type ModPath = Vec<String>;

struct Module {
    path: ModPath,
    /// The source with comments and test modules taken out.
    code: String,
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` are the root.
fn module_path(root: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code without comments, string literals and `#[cfg(test)]` items.
fn strip(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let bytes: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || bytes.get(i + 2) == Some(&'\'')) {
            // A char literal (`'"'`, `'{'`, `'\''`), not a lifetime: skipped, so its
            // quote or brace opens nothing.
            i += if next == Some('\\') { 3 } else { 1 };
            while i < bytes.len() && bytes[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c == 'r' && next == Some('#') && bytes.get(i + 2) == Some(&'"') {
            i += 3;
            while i + 1 < bytes.len() && !(bytes[i] == '"' && bytes[i + 1] == '#') {
                i += 1;
            }
            i += 2;
            out.push_str("\"\"");
        } else {
            out.push(c);
            i += 1;
        }
    }
    drop_test_items(&out)
}

/// Everything after `#[cfg(test)]` up to the end of the item it marks (a `mod … { … }`
/// block, or a `mod …;` line) goes.
fn drop_test_items(code: &str) -> String {
    let mut out = String::new();
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let semicolon = after.find(';').unwrap_or(after.len());
        let brace = after.find('{').unwrap_or(after.len());
        if semicolon < brace {
            rest = &after[(semicolon + 1).min(after.len())..];
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after.char_indices().skip(brace) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Files declared only under `#[cfg(test)]` (`#[cfg(test)] mod property_tests;`, or a
/// `#[path]` test module): not part of the library's layers.
fn test_files(root: &Path, files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut tests = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        for (n, line) in lines.iter().enumerate() {
            if *line != "#[cfg(test)]" {
                continue;
            }
            let mut k = n + 1;
            let mut path_attr = None;
            while k < lines.len() && lines[k].starts_with("#[") {
                if let Some(p) = lines[k].strip_prefix("#[path = \"") {
                    path_attr = p.strip_suffix("\"]").map(String::from);
                }
                k += 1;
            }
            let Some(name) = lines.get(k).and_then(|l| {
                l.trim_start_matches("pub ")
                    .strip_prefix("mod ")
                    .and_then(|m| m.strip_suffix(';'))
            }) else {
                continue;
            };
            let dir = if file.ends_with("mod.rs") || file.ends_with("lib.rs") {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            match path_attr {
                Some(p) => {
                    tests.insert(file.parent().unwrap().join(p));
                }
                None => {
                    tests.insert(dir.join(format!("{name}.rs")));
                    tests.insert(dir.join(name).join("mod.rs"));
                }
            }
        }
    }
    let _ = root;
    tests
}

fn modules() -> Vec<Module> {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let tests = test_files(&root, &files);
    files
        .iter()
        .filter(|f| !tests.contains(*f) && !f.ends_with("main.rs"))
        .map(|file| Module {
            path: module_path(&root, file),
            code: strip(&std::fs::read_to_string(file).unwrap()),
        })
        .collect()
}

/// Expands a use tree (`a::{b, c::{d as e}, self}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    expand_into(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand_into(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find('{') {
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.len() - 1];
        let base: Vec<String> = head
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let depth = prefix.len();
        prefix.extend(base);
        for part in split_top(inner) {
            expand_into(part, prefix, out);
        }
        prefix.truncate(depth);
    } else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let path = path.split("as").next().unwrap_or(path);
        let mut full = prefix.clone();
        full.extend(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
                .map(String::from),
        );
        out.push(full);
    }
}

/// Splits `a, b::{c, d}, e` at the commas outside braces.
fn split_top(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The paths a module's code names: its `use` trees, and `crate::…` paths elsewhere.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let statement = &rest[at + 4..];
        rest = statement;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = statement.find(';') else {
            break;
        };
        let tree = &statement[..end];
        if tree.starts_with("crate::") || tree.starts_with("super::") || tree.starts_with("self::")
        {
            paths.extend(expand(tree));
        }
    }
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        rest = &tail[7..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        paths.push(
            tail[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        );
    }
    paths
}

/// The module a path from `from` lands in: the longest known module prefix.
fn resolve(from: &ModPath, path: &[String], known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base: ModPath = from.clone();
    let mut segments = path.iter().peekable();
    match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            base.clear();
            segments.next();
        }
        Some("super") => {
            while segments.peek().map(|s| s.as_str()) == Some("super") {
                base.pop()?;
                segments.next();
            }
        }
        Some("self") => {
            segments.next();
        }
        _ => return None,
    }
    let mut target = base.clone();
    for segment in segments {
        let mut deeper = target.clone();
        deeper.push(segment.clone());
        if known.contains(&deeper) {
            target = deeper;
        } else {
            break;
        }
    }
    Some(target)
}

fn graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let modules = modules();
    let known: BTreeSet<ModPath> = modules.iter().map(|m| m.path.clone()).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for module in &modules {
        let targets = edges.entry(module.path.clone()).or_default();
        for path in named_paths(&module.code) {
            if let Some(target) = resolve(&module.path, &path, &known) {
                if target != module.path {
                    targets.insert(target);
                }
            }
        }
        // `child::item` in a module's own code uses its child (declaring it with
        // `mod child;` only owns it).
        for child in known
            .iter()
            .filter(|k| k.len() == module.path.len() + 1 && k.starts_with(&module.path))
        {
            let prefix = format!("{}::", child[child.len() - 1]);
            let uses = module.code.match_indices(&prefix).any(|(at, _)| {
                !module.code[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if uses {
                targets.insert(child.clone());
            }
        }
    }
    edges
}

fn name(path: &ModPath) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// Every strongly connected set of more than one module.
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<String>> {
    let nodes: Vec<&ModPath> = edges.keys().collect();
    let reach = |from: &ModPath| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut found = Vec::new();
    let mut placed = BTreeSet::new();
    for node in &nodes {
        if placed.contains(*node) || !reachable[node].contains(*node) {
            continue;
        }
        let mut cycle: Vec<String> = nodes
            .iter()
            .filter(|other| reachable[node].contains(**other) && reachable[**other].contains(*node))
            .map(|other| {
                placed.insert((*other).clone());
                name(other)
            })
            .collect();
        cycle.sort();
        found.push(cycle);
    }
    found
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let edges = graph();
    assert!(
        edges.len() > 40,
        "the source tree was not read: {} modules",
        edges.len()
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles: {found:?}");
}

#[test]
fn arrows_between_top_level_modules_run_down_the_layers() {
    let rank = |path: &ModPath| {
        let top = path.first()?;
        LAYERS
            .iter()
            .find(|(name, _)| name == top)
            .map(|(_, rank)| *rank)
    };
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        if from.is_empty() {
            continue;
        }
        let from_rank =
            rank(&from).unwrap_or_else(|| panic!("{} is in no layer of LAYERS", name(&from)));
        for target in targets {
            if target.first() == from.first() || target.is_empty() {
                continue;
            }
            let to_rank = rank(&target).unwrap_or(0);
            if to_rank >= from_rank {
                wrong.push(format!("{} -> {}", name(&from), name(&target)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows running up or sideways: {wrong:#?}"
    );
}

#[test]
fn tools_import_only_what_they_may_and_only_startup_imports_them() {
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        let Some(from_top) = from.first() else {
            continue;
        };
        let tool = TOOLS.iter().find(|(name, _)| name == from_top);
        for target in targets {
            let Some(to_top) = target.first() else {
                continue;
            };
            if to_top == from_top {
                continue;
            }
            if let Some((_, allowed)) = tool {
                if !allowed.contains(&to_top.as_str()) {
                    wrong.push(format!(
                        "{} -> {} (not in TOOLS)",
                        name(&from),
                        name(&target)
                    ));
                }
            }
            let into_tool = TOOLS.iter().any(|(name, _)| name == to_top);
            if into_tool && from_top != TOOL_USER {
                wrong.push(format!(
                    "{} -> {} (only {TOOL_USER} may)",
                    name(&from),
                    name(&target)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "arrows into or out of tools: {wrong:#?}");
    let known: BTreeSet<String> = graph()
        .keys()
        .filter_map(|path| path.first().cloned())
        .collect();
    for (tool, _) in TOOLS {
        assert!(known.contains(*tool), "{tool} is not in the source tree");
    }
}

#[test]
fn the_reader_sees_a_known_cycle_and_a_known_arrow() {
    let code = strip(
        "use super::a::{B, c::{D as E}, self};\n// use crate::x;\nfn f<'a>() { crate::db::run(\"crate::y\"); g('\"', '{', '\\'') }\n#[cfg(test)]\nmod tests { use crate::z; }",
    );
    let paths = named_paths(&code);
    assert!(paths.contains(&vec!["super".into(), "a".into(), "B".into()]));
    assert!(paths.contains(&vec!["super".into(), "a".into(), "c".into(), "D".into()]));
    assert!(paths.contains(&vec!["crate".into(), "db".into(), "run".into()]));
    assert!(!paths.iter().any(|p| p.contains(&"x".to_string())
        || p.contains(&"y".to_string())
        || p.contains(&"z".to_string())));
    let a: ModPath = vec!["a".into()];
    let b: ModPath = vec!["b".into()];
    let edges = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(cycles(&edges), vec![vec!["a".to_string(), "b".to_string()]]);
}
