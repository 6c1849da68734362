//! The module layering `src/lib.rs` states: a module uses only modules below
//! it. Reads every source file and every `crate::` path in it (tests aside).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Top to bottom, as in `src/lib.rs`.
const LAYERS: &[&str] = &[
    "server",
    "admin",
    "app",
    "handler",
    "response",
    "body",
    "track",
    "access_log",
    "peer",
    "cache",
    "listing",
    "compress",
    "pages",
    "quota",
    "error",
    "fs",
    "mmap",
    "http",
    "path",
    "config",
    "limits",
    "logging",
    "metrics",
];

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_modules_below_them() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|&l| l == m);
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = rank(&top).unwrap_or_else(|| panic!("src/{rel}: module `{top}` is missing from LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        // Test modules may use anything.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + 7..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                group[..group.find('}').unwrap()]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap())
                    .collect()
            } else {
                vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap()]
            };
            for name in names {
                if let Some(used) = rank(name) {
                    checked += 1;
                    if used < own {
                        violations.push(format!("src/{rel}: `{top}` uses `{name}`, which is above it"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} uses found: the scan is broken");
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
