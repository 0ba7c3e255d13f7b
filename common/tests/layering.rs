//! `common`'s modules import no circle: a module that another one builds on never imports it
//! back. Read from the sources, as rust-analyzer's architecture checks do: a module depends on
//! another when its code (comments left out) names `crate::<other>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The crate's top-level modules, from `lib.rs`.
fn modules() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .collect()
}

/// The code of a module: its file and every file under its folder, comment lines left out.
fn code_of(module: &str) -> String {
    let mut files = vec![src().join(format!("{module}.rs"))];
    let mut dirs = vec![src().join(module)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` names as `crate::m` or inside `crate::{m, n::x}`.
fn named(code: &str, modules: &[String]) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| modules.contains(m));
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|m| {
            let mut deps = named(&code_of(m), &modules);
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

/// Every cycle found by a depth-first walk, each as the path that closes it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            found.push(cycle);
            return;
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            walk(g, d, path, done, found);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for m in graph.keys() {
        walk(graph, m, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn no_module_of_common_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(g.len() > 10, "modules read from lib.rs: {:?}", g.keys());
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "import circles in common: {}",
        found
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn the_shared_vocabularies_are_leaves() {
    let g = graph();
    for leaf in ["stage", "headers", "backoff", "ids", "text", "message"] {
        assert_eq!(
            g.get(leaf),
            Some(&BTreeSet::new()),
            "{leaf} must depend on no other module of common"
        );
    }
    // Telemetry reads and writes headers, never the broker; topology names queues from the
    // stage names, never from the config.
    assert!(!g["telemetry"].contains("broker"), "{:?}", g["telemetry"]);
    assert!(!g["topology"].contains("config"), "{:?}", g["topology"]);
}
