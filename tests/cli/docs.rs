//! The documentation is checked against the code: every schema key is documented, the
//! README's sandbox.toml is the real quickstart, and every command shown exists.

use crate::util::{repo, Devbox};

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_schema_key_is_in_the_reference() {
    let schema: serde_json::Value =
        serde_json::from_str(&read("schema/sandbox.schema.json")).unwrap();
    let reference = read("docs/reference.md");
    let mut keys: Vec<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for def in schema["definitions"].as_object().unwrap().values() {
        if let Some(props) = def.get("properties").and_then(|p| p.as_object()) {
            keys.extend(props.keys().cloned());
        }
    }
    keys.sort();
    keys.dedup();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/reference.md does not document: {missing:?}"
    );
}

#[test]
fn the_readme_shows_the_real_quickstart() {
    let readme = read("README.md");
    let start = readme.find("```toml\n").expect("a toml block in README.md") + "```toml\n".len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let quickstart = read("examples/quickstart/sandbox.toml");
    // The example's first line is its #:schema pointer, which the README leaves out.
    let body = quickstart.split_once('\n').unwrap().1;
    assert_eq!(
        block, body,
        "README.md's sandbox.toml differs from examples/quickstart/sandbox.toml"
    );
    assert!(block.lines().count() <= 25);
}

#[test]
fn every_command_in_the_docs_exists() {
    let help = Devbox::new(&repo()).args(["--help"]).run().stdout;
    let known: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        known.contains(&"check") && known.contains(&"render"),
        "{known:?}"
    );
    let mut docs = vec![read("README.md")];
    for f in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "md") {
            docs.push(std::fs::read_to_string(p).unwrap());
        }
    }
    for text in docs {
        let mut in_code = false;
        for line in text.lines() {
            if line.starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if !in_code {
                continue;
            }
            for (i, _) in line.match_indices("devbox ") {
                let before = &line[..i];
                if !(before.trim().is_empty()
                    || before.ends_with("$ ")
                    || before.ends_with("&& ")
                    || before.ends_with("-- "))
                {
                    continue;
                }
                let Some(word) = line[i + "devbox ".len()..].split_whitespace().next() else {
                    continue;
                };
                if word.starts_with('-') {
                    continue;
                }
                assert!(
                    known.contains(&word),
                    "`devbox {word}` is shown in the docs but does not exist: {line}"
                );
            }
        }
    }
}

/// The first cell of each row of the module table in docs/architecture.md: `a/`, `b.rs`.
fn mapped_modules(map: &str) -> Vec<String> {
    map.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .flat_map(|l| {
            let cell = l.split(" |").next().unwrap_or("");
            format!("`{cell}")
                .split('`')
                .filter(|s| s.ends_with('/') || s.ends_with(".rs"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The files and directories a module's row names in its other cells (`tree.rs`, `cgroup/`).
fn named_in_row<'a>(map: &'a str, module: &str) -> Vec<&'a str> {
    let Some(row) = map
        .lines()
        .find(|l| l.starts_with(&format!("| `{module}`")))
    else {
        return Vec::new();
    };
    row.split('`')
        .skip(2)
        .filter(|s| !s.starts_with('.') && (s.ends_with(".rs") || s.ends_with('/')))
        .collect()
}

#[test]
fn the_map_of_the_code_names_every_module_and_only_real_ones() {
    let map = read("docs/architecture.md");
    let mapped = mapped_modules(&map);
    assert!(mapped.len() > 10, "{mapped:?}");
    let src = repo().join("src");
    for m in &mapped {
        assert!(
            src.join(m).exists(),
            "docs/architecture.md maps src/{m}, which does not exist"
        );
        for f in named_in_row(&map, m)
            .into_iter()
            .filter(|_| m.ends_with('/'))
        {
            assert!(
                src.join(m).join(f).exists(),
                "docs/architecture.md names {f} in src/{m}, which does not exist"
            );
        }
    }
    // Every top-level module, and every engine backend, is on the map.
    for (dir, must) in [
        ("", mapped.clone()),
        ("engine/", {
            let mut v: Vec<String> = named_in_row(&map, "engine/")
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.push("mod.rs".into());
            v
        }),
    ] {
        for entry in std::fs::read_dir(src.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                name.push('/');
            }
            assert!(
                must.contains(&name)
                    || (dir.is_empty() && name == "lib.rs" && map.contains("`lib.rs`")),
                "docs/architecture.md does not map src/{dir}{name}"
            );
        }
    }
}
