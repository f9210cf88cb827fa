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
