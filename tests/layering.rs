//! The architecture's layering, as a tested invariant: every `crate::…` path in
//! `src/<layer>/**.rs` (in `use` items and inline paths, comments aside) must name a layer that
//! [`LAYERS`] allows that layer to import. The table is kept here, once, and
//! `docs/architecture.md` shows it: the test fails when the two differ, when a folder of `src/`
//! has no row, or when a file reaches a layer above its own. The docs cannot drift from the
//! folders either: every folder of `src/` is declared and listed in `src/lib.rs` and has a
//! section in the code map, and every layer the map or its table names exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each layer of `src/` and the layers it may import, bottom to top.
const LAYERS: &[(&str, &[&str])] = &[
    ("expr", &[]),
    ("module", &["expr"]),
    ("scenario", &["expr", "module"]),
    ("engine", &["expr", "module", "scenario"]),
    ("apps", &["expr", "module"]),
    ("store", &["module", "scenario"]),
    ("catalog", &["module", "scenario", "store"]),
    (
        "queue",
        &["module", "scenario", "engine", "store", "catalog"],
    ),
    ("triggers", &["scenario", "store", "queue", "catalog"]),
    ("connections", &["module", "store", "apps"]),
    (
        "api",
        &[
            "module",
            "scenario",
            "engine",
            "store",
            "queue",
            "catalog",
            "connections",
        ],
    ),
    (
        "console",
        &[
            "module",
            "scenario",
            "engine",
            "store",
            "queue",
            "catalog",
            "connections",
            "api",
        ],
    ),
    (
        "cli",
        &[
            "expr",
            "module",
            "scenario",
            "engine",
            "apps",
            "store",
            "catalog",
            "queue",
            "triggers",
            "connections",
            "api",
            "console",
        ],
    ),
];

fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, a)| *a)
}

/// The layers named by `crate::` paths in Rust source text, comments skipped:
/// `crate::a::…`, `crate::{a, b::c}`.
fn imported_layers(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.find("//").map_or(line, |i| &line[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        // `some_crate::` is not `crate::`.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            found.insert(ident(rest).to_string());
        }
    }
    found.remove("");
    found
}

/// The first identifier of each top-level item of `a, b::c, d::{e, f}}`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = vec![ident(group.trim_start()).to_string()];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => heads.push(ident(group[i + 1..].trim_start()).to_string()),
            _ => {}
        }
    }
    heads
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src folder") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every forbidden import of the layer's files: `(file, imported layer)`.
fn violations(layer: &str, files: &[(PathBuf, String)]) -> Vec<String> {
    let allowed = allowed(layer).unwrap_or(&[]);
    let mut bad = Vec::new();
    for (file, source) in files {
        for imported in imported_layers(source) {
            if imported != layer && !allowed.contains(&imported.as_str()) {
                bad.push(format!(
                    "{} imports crate::{imported}, which layer `{layer}` may not import (allowed: {})",
                    file.display(),
                    if allowed.is_empty() {
                        "nothing".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
    }
    bad
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src()).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if !path.is_dir() {
            continue;
        }
        let layer = path.file_name().unwrap().to_string_lossy().to_string();
        if allowed(&layer).is_none() {
            problems.push(format!(
                "src/{layer}/ has no row in LAYERS (tests/layering.rs): say what it may import"
            ));
            continue;
        }
        let mut paths = Vec::new();
        rust_files(&path, &mut paths);
        let files: Vec<(PathBuf, String)> = paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("read source");
                (p, text)
            })
            .collect();
        problems.extend(violations(&layer, &files));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_allowed_arrow_points_down() {
    // A layer may import only layers listed before it: the table is a stack, never a cycle.
    for (i, (layer, allowed)) in LAYERS.iter().enumerate() {
        for a in *allowed {
            let position = LAYERS.iter().position(|(l, _)| l == a);
            assert!(
                position.is_some_and(|p| p < i),
                "`{layer}` may import `{a}`, which is not a layer below it"
            );
        }
    }
}

#[test]
fn the_checker_catches_an_upward_import() {
    let file = |text: &str| vec![(PathBuf::from("src/scenario/x.rs"), text.to_string())];
    assert!(violations("scenario", &file("use crate::module::Registry;\n")).is_empty());
    for bad in [
        "use crate::engine::run;\n",
        "use crate::{expr::Template, engine::Report};\n",
        "fn f() { crate::engine::run(); }\n",
        "use crate::{\n    engine,\n};\n",
    ] {
        let found = violations("scenario", &file(bad));
        assert_eq!(found.len(), 1, "{bad:?} → {found:?}");
        assert!(found[0].contains("crate::engine"), "{found:?}");
    }
    // Comments and other crates' `…crate::` paths are not imports.
    assert!(violations("scenario", &file("// see crate::engine::run\n")).is_empty());
    assert!(violations("scenario", &file("use my_crate::engine;\n")).is_empty());
}

#[test]
fn docs_show_the_same_table() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("read docs/architecture.md");
    for (layer, allowed) in LAYERS {
        let imports = if allowed.is_empty() {
            "—".to_string()
        } else {
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let row = format!("| `{layer}` | {imports} |");
        assert!(
            doc.contains(&row),
            "docs/architecture.md lacks the layering row {row:?} (tests/layering.rs is the source)"
        );
    }
}

fn architecture_doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
        .expect("read docs/architecture.md")
}

/// The folders of `src/`: the layers.
fn src_folders() -> BTreeSet<String> {
    std::fs::read_dir(src())
        .expect("read src/")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_dir())
        .map(|path| path.file_name().unwrap().to_string_lossy().to_string())
        .collect()
}

/// The folders the code map of `doc` has a section for (`### \`src/NAME/\``).
fn mapped_folders(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("### `src/"))
        .filter_map(|rest| rest.split_once("/`").map(|(name, _)| name.to_string()))
        .collect()
}

/// The layers of the doc's layering table (`| \`NAME\` | … |` rows).
fn tabled_layers(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn every_folder_is_declared_and_mapped() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read src/lib.rs");
    let doc = architecture_doc();
    let mapped = mapped_folders(&doc);
    let mut problems = Vec::new();
    for layer in src_folders() {
        if !lib.contains(&format!("pub mod {layer};")) {
            problems.push(format!("src/lib.rs does not declare `pub mod {layer};`"));
        }
        if !lib.contains(&format!("//! - [`{layer}`]")) {
            problems.push(format!(
                "src/lib.rs's layer list has no entry \"- [`{layer}`]: …\""
            ));
        }
        if !mapped.contains(&layer) {
            problems.push(format!(
                "docs/architecture.md's code map has no section \"### `src/{layer}/` — …\""
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_layer_the_docs_name_exists() {
    let doc = architecture_doc();
    let folders = src_folders();
    let mut problems = Vec::new();
    for layer in mapped_folders(&doc) {
        if !folders.contains(&layer) {
            problems.push(format!(
                "docs/architecture.md maps src/{layer}/, which does not exist"
            ));
        }
    }
    for layer in tabled_layers(&doc) {
        if allowed(&layer).is_none() {
            problems.push(format!(
                "docs/architecture.md's layering table has `{layer}`, which LAYERS does not"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_doc_readers_find_sections_and_rows() {
    let doc =
        "### `src/expr/` — IML\n### `src/gone/` — old\n| `expr` | — |\n| layer | may import |\n";
    assert_eq!(
        mapped_folders(doc),
        BTreeSet::from(["expr".to_string(), "gone".to_string()])
    );
    assert_eq!(tabled_layers(doc), BTreeSet::from(["expr".to_string()]));
}

/// Every file the repository keeps (`git ls-files`), as text where it is text.
fn tracked_text_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git lists the repository's files");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| !f.is_empty())
        .filter_map(|f| {
            let text = std::fs::read_to_string(root.join(f)).ok()?;
            Some((f.to_string(), text))
        })
        .collect()
}

#[test]
fn no_file_points_outside_the_repository() {
    // A clone has nothing beside it: a path climbing out of the repository (the workspace's
    // `../shared/`) is a dead link for every reader and a missing file for every script.
    let files = tracked_text_files();
    assert!(files.len() > 100, "only {} files read", files.len());
    let outside: Vec<String> = files
        .iter()
        .flat_map(|(file, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, line)| line.contains("../shared/") || line.contains("../../../shared"))
                .map(move |(n, _)| format!("{file}:{}", n + 1))
        })
        .filter(|place| !place.starts_with("tests/layering.rs:"))
        .collect();
    assert!(
        outside.is_empty(),
        "paths outside the repository: {outside:#?}"
    );
}
