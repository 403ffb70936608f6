//! The layer tables of docs/architecture.md are what the code does: every
//! file of `impl/src` ("Layers"), `model/src` ("Layers of model/src") and
//! `traces/src` ("Layers of traces/src") names only modules of its own or
//! a lower layer, and files of one row import each other in no loop.
//!
//! The tables are read from the document (one row per layer, bottom up;
//! the files of a row in backticks), so each order is written once. Each file's
//! code, without comments and without its trailing `#[cfg(test)]` module,
//! is scanned for `crate::` paths (`use crate::{a, b::c}` groups included)
//! and for `#[macro_export]` macros, which live at the crate root but
//! belong to the file that defines them. A submodule file
//! (`large/live.rs`) is in its parent's layer unless the table lists it.
//! Test-only files (`protocol_tests.rs`, `*/tests.rs`), `lib.rs` and the
//! binaries of `bin/` (crate roots of their own) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Imports of `impl/src` that still go up, each `(file, module it names)`:
/// issue 22 removes them. The test fails on any other upward import, and on an
/// entry here that no longer happens (so the list only shrinks).
const NOT_YET_DOWN: &[(&str, &str)] = &[];

struct Layer {
    index: usize,
    name: String,
}

/// `file (relative to src) -> layer`, from the table under `## {heading}`.
fn layer_table(doc: &str, heading: &str) -> BTreeMap<String, Layer> {
    let mut rows = BTreeMap::new();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(&format!("{heading}\n")))
        .unwrap_or_else(|| panic!("docs/architecture.md has no `## {heading}` section"));
    let mut index = 0;
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "layer" || cells[1].starts_with("---") {
            continue;
        }
        for file in cells[2].split('`').skip(1).step_by(2) {
            rows.insert(
                file.to_string(),
                Layer {
                    index,
                    name: cells[1].to_string(),
                },
            );
        }
        index += 1;
    }
    assert!(index > 3, "the layer table `{heading}` has {index} rows");
    rows
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code lines (1-based numbers) with comments blanked and its
/// `#[cfg(test)]` modules left out (tests may use any layer).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let code = match lines[i].find("//") {
            Some(k) => &lines[i][..k],
            None => lines[i],
        };
        let next = lines.get(i + 1).map_or("", |n| n.trim_start());
        if code.trim() == "#[cfg(test)]" && next.starts_with("mod ") {
            // Skip to the line that closes the module's braces.
            i += 1;
            let mut depth = 0i32;
            let mut opened = false;
            while i < lines.len() {
                let l = lines[i].split("//").next().unwrap_or("");
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                i += 1;
                if !opened && l.trim_end().ends_with(';') || opened && depth <= 0 {
                    break;
                }
            }
            continue;
        }
        out.push((i + 1, code.to_string()));
        i += 1;
    }
    out
}

/// The top-level module names of every `crate::` path on a line.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(k) = rest.find("crate::") {
        let before = &rest[..k];
        rest = &rest[k + "crate::".len()..];
        if before.ends_with('$') || before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::` in a macro, or part of a longer word
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first name of each item at depth 1.
            let mut depth = 1;
            let mut item_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && (c.is_alphanumeric() || c == '_') => {
                        ident.push(c)
                    }
                    _ if depth == 1 && item_start && !ident.is_empty() => {
                        names.push(std::mem::take(&mut ident));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !ident.is_empty() {
                names.push(ident);
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                names.push(ident);
            }
        }
    }
    names
}

/// The upward imports of the crate whose sources are `src` (named `shown`
/// in messages): `(file, line, module, message)`.
fn upward_imports(
    src: &Path,
    shown: &str,
    doc: &str,
    heading: &str,
) -> Vec<(String, usize, String, String)> {
    let table = layer_table(doc, heading);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let rel = |p: &Path| {
        p.strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/")
    };
    let skipped = |r: &str| {
        r == "lib.rs"
            || r == "protocol_tests.rs"
            || r.ends_with("/tests.rs")
            || r.starts_with("bin/")
    };
    // The layer of a file: its own row, or its parent module's.
    let layer_of = |r: &str| -> Option<&Layer> {
        table.get(r).or_else(|| {
            let parent = r.split('/').next()?;
            table.get(&format!("{parent}.rs"))
        })
    };
    // `#[macro_export]` macros: crate-root names owned by a file.
    let mut macros = BTreeMap::new();
    for p in &files {
        let text = std::fs::read_to_string(p).unwrap();
        let mut exported = false;
        for line in text.lines() {
            let t = line.trim();
            if t == "#[macro_export]" {
                exported = true;
            } else if let Some(m) = t.strip_prefix("macro_rules! ") {
                if exported {
                    macros.insert(m.trim_end_matches(" {").to_string(), rel(p));
                }
                exported = false;
            }
        }
    }
    let mut missing = BTreeSet::new();
    let mut out = Vec::new();
    // Imports between files of one row: `file -> (file it names -> line)`.
    let mut same_layer: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for p in &files {
        let r = rel(p);
        if skipped(&r) {
            continue;
        }
        let Some(me) = layer_of(&r) else {
            missing.insert(r);
            continue;
        };
        let text = std::fs::read_to_string(p).unwrap();
        for (n, line) in code_lines(&text) {
            for m in crate_paths(&line) {
                let target = macros.get(&m).cloned().unwrap_or(format!("{m}.rs"));
                if target == r {
                    continue;
                }
                let Some(them) = layer_of(&target) else {
                    missing.insert(target);
                    continue;
                };
                let parent_or_child = target.starts_with(&r.replace(".rs", "/"))
                    || r.starts_with(&target.replace(".rs", "/"));
                if them.index == me.index && !parent_or_child {
                    same_layer
                        .entry(r.clone())
                        .or_default()
                        .insert(target.clone(), n);
                }
                if them.index > me.index {
                    let msg = format!(
                        "{shown}/{r}:{n}: names `{m}` (layer {} \"{}\") from layer {} \"{}\": a lower layer may not import a higher one",
                        them.index, them.name, me.index, me.name
                    );
                    out.push((r.clone(), n, m, msg));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files of {shown} missing from docs/architecture.md's table `{heading}`: {missing:?}"
    );
    if let Some(cycle) = find_cycle(&same_layer) {
        let path: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{shown}/{}:{}", w[0], same_layer[&w[0]][&w[1]]))
            .collect();
        let msg = format!(
            "{} import each other in a loop (one layer, \"{}\"): {}",
            path.join(" → "),
            layer_of(&cycle[0]).map_or("?", |l| l.name.as_str()),
            cycle.join(" → ")
        );
        out.push((cycle[0].clone(), 0, cycle[1].clone(), msg));
    }
    out
}

/// A loop in `edges` (`[a, b, …, a]`), if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeMap<String, usize>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeMap<String, usize>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(k) = stack.iter().position(|s| s == n) {
            let mut c = stack[k..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// Checks one crate's sources against its table; `allowed` are the known
/// upward imports (each must still happen).
fn check_crate(dir: &str, heading: &str, allowed: &[(&str, &str)]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let shown = format!("{dir}/src");
    let found = upward_imports(&root.join(&shown), &shown, &doc, heading);
    let allowed: BTreeSet<(&str, &str)> = allowed.iter().copied().collect();
    let mut report = String::new();
    let mut seen = BTreeSet::new();
    for (file, _, module, msg) in &found {
        if allowed.contains(&(file.as_str(), module.as_str())) {
            seen.insert((file.as_str(), module.as_str()));
        } else {
            let _ = writeln!(report, "{msg}");
        }
    }
    for a in allowed.difference(&seen) {
        let _ = writeln!(
            report,
            "verify/tests/layers.rs: NOT_YET_DOWN lists {a:?}, which no longer happens: remove it"
        );
    }
    report
}

#[test]
fn no_file_of_impl_imports_a_higher_layer() {
    let report = check_crate("impl", "Layers", NOT_YET_DOWN);
    assert!(report.is_empty(), "\n{report}");
}

#[test]
fn no_file_of_model_imports_a_higher_layer() {
    let report = check_crate("model", "Layers of model/src", &[]);
    assert!(report.is_empty(), "\n{report}");
}

#[test]
fn no_file_of_traces_imports_a_higher_layer() {
    let report = check_crate("traces", "Layers of traces/src", &[]);
    assert!(report.is_empty(), "\n{report}");
}

/// The scanner itself: a planted upward import is reported with its file,
/// line and both layers; a group import, a macro and comments are read as
/// they should be.
#[test]
fn the_scanner_reports_a_planted_upward_import() {
    let dir = std::env::temp_dir().join(format!("hakmem-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("low")).unwrap();
    let doc = "# x\n\n## Layers\n\n| layer | file | concept |\n| --- | --- | --- |\n\
        | a | `a.rs` | |\n| b | `b.rs` | |\n| c | `low.rs` | |\n| d | `d.rs` | |\n\
        | e | `e.rs` | |\n| f | `f.rs`, `f2.rs` | |\n| g | `g.rs` | |\n\n## Next\n";
    let files = [
        ("a.rs", "// crate::g is only a comment\nuse crate::{b::X, d};\n"),
        ("b.rs", "#[macro_export]\nmacro_rules! boom {\n    () => { $crate::a::f() };\n}\n"),
        ("low.rs", "pub mod live;\n"),
        ("low/live.rs", "fn f() { crate::boom!(); super::x(); crate::a::y(); }\n"),
        (
            "d.rs",
            "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::g;\n    fn f() {}\n}\nuse crate::e;\n",
        ),
        ("e.rs", ""),
        ("f.rs", "use crate::f2::X;\n"),
        ("f2.rs", "\nfn y() { crate::f::z() }\n"),
        ("g.rs", ""),
    ];
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    let found = upward_imports(&dir, "impl/src", doc, "Layers");
    std::fs::remove_dir_all(&dir).unwrap();
    let msgs: Vec<&str> = found.iter().map(|f| f.3.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "impl/src/a.rs:2: names `b` (layer 1 \"b\") from layer 0 \"a\": a lower layer may not import a higher one",
            "impl/src/a.rs:2: names `d` (layer 3 \"d\") from layer 0 \"a\": a lower layer may not import a higher one",
            "impl/src/d.rs:7: names `e` (layer 4 \"e\") from layer 3 \"d\": a lower layer may not import a higher one",
            "impl/src/f.rs:1 → impl/src/f2.rs:2 import each other in a loop (one layer, \"f\"): f.rs → f2.rs → f.rs",
        ],
        "{msgs:#?}"
    );
}
