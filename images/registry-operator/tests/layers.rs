//! The scan core's layers (src/registry/mod.rs): each module uses only the modules of its own
//! layer or the layers below, and nothing in the core reaches the cluster side. Read from the
//! sources, so an import that reaches up fails here before it can grow into a circle.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Lower rank = lower layer. Keep in step with the list in src/registry/mod.rs.
const LAYERS: &[(&str, u8)] = &[
    ("artifact", 0),
    ("error", 0),
    ("cache", 0),
    ("model", 0),
    ("facts", 0),
    ("limits", 0),
    ("order", 0),
    ("policy", 0),
    ("target", 0),
    ("timestamp", 0),
    ("transport", 1),
    ("auth", 2),
    ("session", 3),
    ("protocol", 4),
    ("listing", 5),
    ("state", 6),
    ("registry_client", 6),
    ("scanner", 7),
];

fn core() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/registry")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The first segment of every path after `prefix`, `prefix{a::b, c}` giving `a` and `c`.
fn segments_after(text: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() {
                            found.push(first.to_string());
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Names re-exported by src/registry/mod.rs, and the module each comes from.
fn reexports() -> HashMap<String, String> {
    let text = fs::read_to_string(core().join("mod.rs")).unwrap();
    let mut map = HashMap::new();
    for stmt in text.split(';') {
        let Some(at) = stmt.find("pub use ") else {
            continue;
        };
        let path = &stmt[at + "pub use ".len()..];
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        for name in names
            .trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
            .split(',')
        {
            let name = name.trim().rsplit("::").next().unwrap_or("").trim();
            if !name.is_empty() {
                map.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    map
}

#[test]
fn every_core_module_uses_only_its_layer_and_below() {
    let ranks: HashMap<&str, u8> = LAYERS.iter().copied().collect();
    let names = reexports();
    let mut files = Vec::new();
    rust_files(&core(), &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(core()).unwrap().to_path_buf();
        let parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let own = parts[0].clone();
        if own == "mod" {
            continue;
        }
        let Some(&own_rank) = ranks.get(own.as_str()) else {
            violations.push(format!(
                "{}: module {own} is not in tests/layers.rs LAYERS",
                relative.display()
            ));
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        // Drop unit tests: they may use anything.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut used = segments_after(text, "crate::registry::");
        match parts.len() {
            // src/registry/x.rs: `super::` is the core's root.
            1 => used.extend(segments_after(text, "super::")),
            // src/registry/x/y.rs: `super::super::` is the root.
            _ => used.extend(segments_after(text, "super::super::")),
        }
        for name in used {
            let module = if ranks.contains_key(name.as_str()) {
                name.clone()
            } else if let Some(m) = names.get(&name) {
                m.clone()
            } else {
                continue;
            };
            if module == own {
                continue;
            }
            let rank = ranks[module.as_str()];
            if rank > own_rank {
                violations.push(format!(
                    "{}: {own} (layer {own_rank}) uses {name} from {module} (layer {rank})",
                    relative.display()
                ));
            }
        }
        for outside in ["crate::controller", "crate::api", "crate::status", "kube::"] {
            if text.contains(outside) {
                violations.push(format!(
                    "{}: the scan core uses {outside}",
                    relative.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_parser_sees_grouped_and_nested_imports() {
    assert_eq!(
        segments_after(
            "use crate::registry::{auth::{A, B}, Image, session::Session};",
            "crate::registry::"
        ),
        ["auth", "Image", "session"]
    );
    assert_eq!(
        segments_after("use super::scanner::head;", "super::"),
        ["scanner"]
    );
}
