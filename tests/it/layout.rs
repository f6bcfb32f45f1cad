//! The source layout keeps the architecture visible: the top-level modules of `src/` import each other
//! without cycles, the node side (`node/`, what `airgap node ...` runs on a node) depends only on the base
//! modules, every directory module says what lives in it, and no source file grows past 600 lines.
//!
//! An edge `a -> b` is any `crate::b` path (in `use` or inline, `use crate::{b, ..}` groups included) in a
//! file under `src/a/` or in `src/a.rs`; comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// What the node side may import: it runs on the nodes and must not pull in the deploy side.
const NODE_MAY_USE: [&str; 3] = ["digest", "fsutil", "error"];
const MAX_LINES: usize = 600;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules: `src/x.rs` and `src/x/` (the crate roots `lib.rs` and `main.rs` are not modules).
fn top_modules() -> BTreeSet<String> {
    std::fs::read_dir(SRC)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_string_lossy().into_owned();
            (p.is_dir() || p.extension().is_some_and(|e| e == "rs")).then_some(name)
        })
        .filter(|n| n != "lib" && n != "main")
        .collect()
}

/// The code of a file without its comments (line comments and doc comments; block comments are not used).
fn code(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level modules named by `crate::` paths in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    for (i, _) in code.match_indices("crate::") {
        // skip `$crate::` and `my_crate::`
        if code[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b, c::{y, z}}`: the first segment of each top-level item of the group
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        out.insert(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

struct Source {
    /// path under src/
    path: String,
    top: String,
    lines: usize,
    text: String,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    rs_files(Path::new(SRC), &mut files);
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(SRC).unwrap().to_string_lossy().into_owned();
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            (top != "lib" && top != "main").then(|| Source { path: rel, top, lines: text.lines().count(), text })
        })
        .collect()
}

/// top -> (imported top -> the first file that imports it)
fn edges(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, String>> {
    let tops = top_modules();
    let mut g: BTreeMap<String, BTreeMap<String, String>> = tops.iter().map(|t| (t.clone(), BTreeMap::new())).collect();
    for s in sources {
        for r in crate_refs(&code(&s.text)) {
            if r != s.top && tops.contains(&r) {
                g.get_mut(&s.top).unwrap().entry(r).or_insert_with(|| s.path.clone());
            }
        }
    }
    g
}

/// One cycle of the graph as `a -> b -> ... -> a`, if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for m in g.get(n).into_iter().flat_map(|e| e.keys()) {
            match state.get(m.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|x| x == m).unwrap();
                    let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn edge_scanner_reads_paths_and_groups() {
    let refs = crate_refs("use crate::{a::x, b, c::{y, z}};\nlet v = crate::d::f();\nmacro $crate::e!();\nuse my_crate::g;");
    assert_eq!(refs, ["a", "b", "c", "d"].into_iter().map(String::from).collect());
    assert_eq!(code("use crate::a; // crate::b\n/// crate::c\n//! crate::d"), "use crate::a; // crate::b");
    let g: BTreeMap<String, BTreeMap<String, String>> = [("x", "y"), ("y", "z"), ("z", "x")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), [(b.to_string(), String::new())].into()))
        .collect();
    assert_eq!(find_cycle(&g).unwrap(), ["x", "y", "z", "x"]);
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let g = edges(&sources());
    if let Some(cycle) = find_cycle(&g) {
        let detail: Vec<String> = cycle.windows(2).map(|w| format!("{} -> {} (in src/{})", w[0], w[1], g[&w[0]][&w[1]])).collect();
        panic!("import cycle between top-level modules: {}\n  {}", cycle.join(" -> "), detail.join("\n  "));
    }
}

#[test]
fn the_node_side_depends_only_on_the_base_modules() {
    let g = edges(&sources());
    let node = g.get("node").expect("src/node/ holds what `airgap node ...` runs");
    let bad: Vec<String> =
        node.iter().filter(|(m, _)| !NODE_MAY_USE.contains(&m.as_str())).map(|(m, f)| format!("crate::{m} in src/{f}")).collect();
    assert!(bad.is_empty(), "node/ may import only {NODE_MAY_USE:?}, found: {}", bad.join(", "));
}

#[test]
fn source_files_stay_small_and_directories_say_what_they_hold() {
    let sources = sources();
    let long: Vec<String> =
        sources.iter().filter(|s| s.lines > MAX_LINES).map(|s| format!("src/{} ({} lines)", s.path, s.lines)).collect();
    assert!(long.is_empty(), "source files over {MAX_LINES} lines (split them by concept): {}", long.join(", "));
    let undocumented: Vec<&str> = sources
        .iter()
        .filter(|s| s.path.ends_with("/mod.rs") && !s.text.trim_start().starts_with("//!"))
        .map(|s| s.path.as_str())
        .collect();
    assert!(undocumented.is_empty(), "directory modules without a `//!` doc saying what lives there: {undocumented:?}");
}
