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
    let mut text = std::fs::read_to_string(&file).unwrap();
    // A module that re-exports its children whole (`pub use create::*;`)
    // defines what they define.
    let globbed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub use ")?.strip_suffix("::*;"))
        .filter(|m| m.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect();
    for m in globbed {
        if let Ok(t) = std::fs::read_to_string(dir.join(format!("{m}.rs"))) {
            text.push_str(&t);
        }
    }
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

/// Rust source as tokens (identifiers, and punctuation one character
/// each) with their line numbers: comments, strings and character
/// literals left out, so that a word in them is not taken for code.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    // Skips a string whose opening quote is at i (after `hashes` #s for a
    // raw string); returns the index after it and counts its lines.
    let string = |mut i: usize, raw: Option<usize>, line: &mut usize| -> usize {
        i += 1;
        while i < c.len() {
            match c[i] {
                '\n' => *line += 1,
                '\\' if raw.is_none() => i += 1,
                '"' => match raw {
                    None => return i + 1,
                    Some(n) if (1..=n).all(|k| at(i + k) == '#') => return i + 1 + n,
                    Some(_) => {}
                },
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = string(i, None, &mut line);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{1F}'), or a lifetime.
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let hashes = (i..).take_while(|&k| at(k) == '#').count();
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                i = string(i + hashes, Some(hashes), &mut line);
            } else if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = string(i, None, &mut line);
            } else {
                out.push((line, word));
            }
        } else {
            out.push((line, ch.to_string()));
            i += 1;
        }
    }
    out
}

/// The only files that may hold `unsafe`: the system calls, and the
/// sandbox module that makes its children.
const UNSAFE_HOMES: [&str; 2] = ["sys/", "emu/sandbox/fork.rs"];

/// The only places unsafe code is allowed, as tokens: on those two
/// modules' declarations, nothing wider.
const UNSAFE_ALLOWS: [(&str, &str); 2] =
    [("lib.rs", "#[allow(unsafe_code)]pubmodsys;"), ("emu/sandbox/mod.rs", "#[allow(unsafe_code)]modfork;")];

/// Where `files` ((path under src/, text)) break the rule of `unsafe`:
/// `unsafe` (blocks, fns, impls, traits, extern blocks) outside
/// [`UNSAFE_HOMES`], and any mention of the `unsafe_code` lint in code
/// but the [`UNSAFE_ALLOWS`] (an allow on another module, or a file's own
/// `#![allow(unsafe_code)]`, would widen where unsafe code compiles).
fn unsafe_findings(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let toks = tokens(text);
        let home = UNSAFE_HOMES.iter().any(|h| path.starts_with(h));
        for (n, (line, tok)) in toks.iter().enumerate() {
            if tok == "unsafe" && !home {
                found.push(format!("unsafe at {path}:{line}"));
            }
            if tok == "unsafe_code" {
                // The tokens from the attribute's `#` to the item's `;`.
                let start = toks[..n].iter().rposition(|(_, t)| t == "#").unwrap_or(0);
                let end = toks[n..].iter().position(|(_, t)| t == ";").map_or(toks.len(), |e| n + e + 1);
                let here: String = toks[start..end].iter().map(|(_, t)| t.as_str()).collect();
                if !UNSAFE_ALLOWS.contains(&(path.as_str(), here.as_str())) {
                    found.push(format!("unsafe_code lint at {path}:{line}: {here}"));
                }
            }
        }
    }
    found
}

fn src_files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// `unsafe` lives in `src/sys/` (system calls behind safe functions) and
/// in the sandbox's `fork` module (the children it makes must keep to
/// async-signal-safe calls, which no type can check), and unsafe code is
/// allowed on those two modules only; Cargo.toml denies it everywhere
/// else, and asks for a SAFETY comment on every unsafe block.
#[test]
fn unsafe_is_only_in_sys_and_the_sandboxs_fork_module() {
    let files = src_files();
    assert_eq!(unsafe_findings(&files), Vec::<String>::new());
    // The allowances are no wider than the code needs: each place uses it.
    for home in UNSAFE_HOMES {
        let used =
            files.iter().any(|(p, t)| p.starts_with(home) && tokens(t).iter().any(|(_, w)| w == "unsafe"));
        assert!(used, "nothing in {home} is unsafe: remove it from the allowed places");
    }
    for (file, _) in UNSAFE_ALLOWS {
        assert!(files.iter().any(|(p, _)| p == file), "{file} is gone");
    }
    let manifest: toml::Table =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let lints = &manifest["lints"];
    for (tool, lint) in [
        ("rust", "unsafe_code"),
        ("rust", "unsafe_op_in_unsafe_fn"),
        ("clippy", "undocumented_unsafe_blocks"),
        ("clippy", "missing_safety_doc"),
    ] {
        let level = lints.get(tool).and_then(|t| t.get(lint)).and_then(|l| l.as_str());
        assert!(matches!(level, Some("deny" | "forbid")), "Cargo.toml [lints.{tool}] {lint} is {level:?}");
    }
}

#[test]
fn the_unsafe_check_finds_unsafe_code_and_wider_allows() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    // The layout before emu::sandbox was split: the allow on all of it.
    let before = [
        file("lib.rs", "#[allow(unsafe_code)]\npub mod sys;\n"),
        file("emu/mod.rs", "pub mod arch;\n#[allow(unsafe_code)]\npub mod sandbox;\n"),
        file("emu/sandbox.rs", "/// open, write\nunsafe fn write_file() {}\n"),
        file("emu/sandbox/rootfs.rs", "#![allow(unsafe_code)]\nfn f() { unsafe { g() } }\n"),
        file("sys/mod.rs", "fn f() { unsafe { g() } }\n"),
    ];
    assert_eq!(
        unsafe_findings(&before),
        [
            "unsafe_code lint at emu/mod.rs:2: #[allow(unsafe_code)]pubmodsandbox;",
            "unsafe at emu/sandbox.rs:2",
            "unsafe_code lint at emu/sandbox/rootfs.rs:1: #![allow(unsafe_code)]fnf(){unsafe{g()}}",
            "unsafe at emu/sandbox/rootfs.rs:2",
        ]
    );
    // Words in comments, strings and characters are not code.
    let words = [file(
        "emu/check.rs",
        "// unsafe\n/* unsafe /* unsafe_code */ */ fn f<'a>() { let _ = (\"unsafe\", r#\"unsafe\"#, 'u', '\\'', b\"unsafe\"); }\n",
    )];
    assert_eq!(unsafe_findings(&words), Vec::<String>::new());
}
