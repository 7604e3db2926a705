//! The dependency rules of docs/ARCHITECTURE.md, checked on the source:
//! the subsystems (`src/<name>/` or `src/<name>.rs`) form a graph without
//! cycles, so does every module two levels deep (`image::inspect`,
//! `image::proxy`, ...), and `error` depends on nothing of mtbx. A change
//! that adds a cycle fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file, `depth` components deep.
fn module_of(src: &Path, file: &Path, depth: usize) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    if parts.first().is_some_and(|p| p == "lib" || p == "main") {
        return None;
    }
    Some(parts.into_iter().take(depth).collect::<Vec<_>>().join("::"))
}

/// `crate::a::b...` paths outside `#[cfg(test)]` code, cut to `depth`.
fn uses(text: &str, depth: usize) -> BTreeSet<String> {
    // Code only: not tests, not comments (doc links name modules too).
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let code = code.as_str();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let path: String =
            code[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        // Only module names (lower case), not items reached through them.
        let modules: Vec<&str> = parts
            .iter()
            .copied()
            .take_while(|p| p.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
            .collect();
        if !modules.is_empty() {
            out.insert(modules.into_iter().take(depth).collect::<Vec<_>>().join("::"));
        }
    }
    out
}

fn graph(depth: usize) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let Some(from) = module_of(&src, &f, depth) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        for to in uses(&text, depth) {
            // A module may use its own children and parents freely.
            if to != from && !to.starts_with(&format!("{from}::")) && !from.starts_with(&format!("{to}::")) {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// A cycle of the graph, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(n: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn the_subsystems_depend_on_each_other_without_cycles() {
    let g = graph(1);
    assert!(g.contains_key("cli") && g.contains_key("toolbox"), "the source was not read: {g:?}");
    if let Some(c) = cycle(&g) {
        panic!("subsystem cycle: {}", c.join(" -> "));
    }
    assert!(!g.contains_key("error"), "error must depend on nothing of mtbx: {:?}", g.get("error"));
}

#[test]
fn modules_depend_on_each_other_without_cycles() {
    let g = graph(2);
    if let Some(c) = cycle(&g) {
        panic!("module cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}

/// mimalloc reads its options when it reserves its first arena, so they
/// must be set before anything allocates: set after the CPU-model shim's
/// check (which allocates), they were ignored and a pull's peak RSS went
/// from 37 to 70 MiB (benches/pull.sh).
#[test]
fn main_tunes_the_allocator_before_anything_else() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    let body = &main[main.find("fn main()").expect("src/main.rs has fn main")..];
    let first = body.lines().skip(1).map(str::trim).find(|l| !l.is_empty() && !l.starts_with("//")).unwrap();
    assert_eq!(first, "mtbx::sys::tune_allocator();", "the first statement of main");
}

/// Every error type that knows its kind (`impl Classify for T`) is in the
/// one list that turns errors into exit codes (src/cli/errors.rs): a type
/// missing there would exit 1 whatever kind it says it is.
#[test]
fn every_classified_error_reaches_the_exit_code() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let listed = std::fs::read_to_string(src.join("cli/errors.rs")).unwrap();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut missing = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("Classify for ") {
            let ty: String =
                text[i + 13..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let module = module_of(&src, &f, 9).unwrap_or_default();
            let path =
                if module.is_empty() { format!("crate::{ty}") } else { format!("crate::{module}::{ty}") };
            let named = listed.contains(&format!("{path},"))
                || (module == "error" && listed.contains(&format!("{ty},")));
            if !named {
                missing.push(path);
            }
        }
    }
    assert!(missing.is_empty(), "not in src/cli/errors.rs's list: {missing:?}");
}

/// Only `main` ends the process: library and command code return their
/// errors (so they are reported, classified and cleaned up after), the
/// one exception being the panic hook that ends a command whose stdout
/// reader has gone (src/cli/mod.rs).
#[test]
fn nothing_below_main_exits_the_process() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.contains("process::exit(") && !l.starts_with("//") {
                found.push(format!("{}:{}", f.strip_prefix(&src).unwrap().display(), n + 1));
            }
        }
    }
    assert_eq!(found, ["cli/mod.rs:".to_string() + &line_of_hook(&src)], "process::exit below main");
}

fn line_of_hook(src: &Path) -> String {
    let text = std::fs::read_to_string(src.join("cli/mod.rs")).unwrap();
    let n = text.lines().position(|l| l.contains("std::process::exit(exit::OK)")).unwrap();
    (n + 1).to_string()
}

/// The front ends speak, the library works: no file under src/cli/ runs
/// podman, builds its arguments or reads its JSON. Both `mtbx` and
/// `toolbox` go through the operations layer (src/toolbox/ops.rs) over
/// the one typed engine (src/toolbox/engine.rs), so a podman quirk is
/// handled once for both names.
#[test]
fn the_front_ends_never_drive_podman_themselves() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    sources(&cli, &mut files);
    // What driving podman from here would take: its type, its module, its
    // verbs as arguments, or parsing its answers.
    let words = [
        "Podman",
        "toolbox::engine",
        "\"ps\"",
        "\"exec\"",
        "\"inspect\"",
        "\"images\"",
        "\"start\"",
        "\"wait\"",
        "serde_json::from_str",
        "serde_json::from_slice",
    ];
    let mut found = Vec::new();
    // errors.rs names every error type by its defining path, the engine's
    // among them, to map it to an exit code; it runs nothing.
    for f in files.iter().filter(|f| !f.ends_with("errors.rs")) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let l = line.trim_start();
            if l.starts_with("//") {
                continue;
            }
            for w in words.iter().filter(|w| l.contains(*w)) {
                found.push(format!("{}:{}: {w}", f.strip_prefix(&cli).unwrap().display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "src/cli/ drives podman itself:\n{}", found.join("\n"));
}

/// docs/ARCHITECTURE.md is a map a newcomer trusts: every path it names
/// (`src/...`, `tests/...`) exists, and every item path (`ops::Toolbox`,
/// `engine::Podman`, `selection::select`) resolves to a module of
/// src/ that defines it. A rename that forgets the map fails here.
#[test]
fn the_architecture_map_names_only_what_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let src = root.join("src");
    // An item is named from the crate's root (`toolbox::ops::Toolbox`) or,
    // inside a subsystem's section, from that subsystem (`ops::Toolbox`).
    let mut bases = vec![src.clone()];
    bases.extend(std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
    let spans: Vec<&str> = doc.split('`').skip(1).step_by(2).collect();
    let mut wrong = Vec::new();
    let (mut paths, mut items) = (0, 0);
    for span in spans {
        let span = span.trim_end_matches("()");
        let roots = ["src/", "tests/", "vendor-tests/", "benches/", "scripts/", "docs/", "fixtures/", ".ci/"];
        if roots.iter().any(|r| span.starts_with(r)) && !span.contains(' ') {
            paths += 1;
            if !root.join(span).exists() {
                wrong.push(format!("path {span}"));
            }
            continue;
        }
        let segs: Vec<&str> = span.trim_start_matches("crate::").split("::").collect();
        let is_path = segs.len() > 1
            && segs.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'));
        if !is_path {
            continue;
        }
        items += 1;
        let tried: Vec<Result<(), String>> = bases.iter().map(|b| resolve_item(b, &segs)).collect();
        if !tried.iter().any(Result::is_ok) {
            let why = tried.into_iter().filter_map(Result::err).find(|e| e != "no such module");
            wrong.push(format!("item {span}: {}", why.unwrap_or_else(|| "no such module".into())));
        }
    }
    assert!(paths > 20 && items > 20, "the map names {paths} paths and {items} items: is the scan broken?");
    assert!(wrong.is_empty(), "docs/ARCHITECTURE.md names what does not exist:\n{}", wrong.join("\n"));
}

/// Walk `segs` down src/'s modules as far as files go; the rest must be an
/// item the last module defines (or re-exports), and a method or variant
/// after it a name that module's file holds.
fn resolve_item(src: &Path, segs: &[&str]) -> Result<(), String> {
    let mut dir = src.to_path_buf();
    let mut file = None;
    let mut i = 0;
    while i < segs.len() {
        let (flat, nested) = (dir.join(format!("{}.rs", segs[i])), dir.join(segs[i]).join("mod.rs"));
        let found = if flat.exists() {
            flat
        } else if nested.exists() {
            nested
        } else {
            break;
        };
        file = Some(found);
        dir = dir.join(segs[i]);
        i += 1;
    }
    let file = file.ok_or("no such module")?;
    let text = std::fs::read_to_string(&file).unwrap();
    let Some(item) = segs.get(i) else { return Ok(()) };
    let kinds = ["fn", "struct", "enum", "trait", "const", "static", "type", "mod"];
    let defined = kinds.iter().any(|k| {
        text.match_indices(&format!("{k} {item}")).any(|(at, m)| {
            let after = text[at + m.len()..].chars().next().unwrap_or(' ');
            !(after.is_alphanumeric() || after == '_')
        })
    }) || text.lines().any(|l| l.trim_start().starts_with("pub use") && l.contains(item));
    if !defined {
        return Err(format!("{} does not define {item}", file.display()));
    }
    match segs.get(i + 1) {
        Some(member) if !text.contains(member) => Err(format!("{} has no {member}", file.display())),
        _ => Ok(()),
    }
}
