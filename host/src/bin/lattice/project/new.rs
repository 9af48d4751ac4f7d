//! `lattice new rust|go|c|rust-component|python|js NAME`: a buildable actor
//! project with its SDK (for the component languages, a wasi:http component
//! with its WIT).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};
use serde::Serialize;

use super::{Language, PROJECT_FILE};
use crate::output::{OutputFormat, print_json};

/// The SDKs as built into this binary (see this crate's `build.rs`).
mod sdk {
    include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));
}

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The language of the actor
    language: Language,
    /// The actor's name: letters, digits, '-' and '_', starting with a letter
    name: String,
    /// Where to write it (default: ./NAME); must not exist or be empty
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Created {
    name: String,
    language: Language,
    dir: PathBuf,
    files: usize,
}

pub fn run(out: OutputFormat, args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    lattice::id::ActorId::new(name).context("invalid actor name")?;
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("invalid actor name {name:?}: it must start with a letter (it names a package too)");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} already exists and is not empty; pick another NAME or --dir",
            dir.display()
        );
    }
    let files = files(args.language, name)?;
    for (path, bytes) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        std::fs::write(&target, bytes)
            .with_context(|| format!("could not write {}", target.display()))?;
    }
    if out == OutputFormat::Json {
        print_json(&Created {
            name: name.clone(),
            language: args.language,
            dir: dir.clone(),
            files: files.len(),
        })?;
    } else {
        println!(
            "created {} actor {name} in {} ({} files, the SDK included)",
            args.language,
            dir.display(),
            files.len()
        );
        if args.language.is_component() {
            println!(
                "next: cd {} && lattice build && lattice ctl start actor build/{name}.wasm && lattice ctl start provider builtin:httpserver && lattice ctl link put {name} httpserver lattice:httpserver address=127.0.0.1:8080 && curl http://127.0.0.1:8080/",
                dir.display()
            );
        } else {
            println!(
                "next: cd {} && lattice build && lattice ctl start actor build/{name}.wasm && lattice call {name} SayHello '\"world\"'",
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where each language's SDK goes in a project.
fn sdk_dir(language: Language) -> &'static str {
    match language {
        Language::Rust => "vendor/",
        Language::Go | Language::C => "lattice-sdk/",
        Language::RustComponent | Language::Python | Language::Js => "wit/",
    }
}

/// What building a component project of `language` needs, for its README.
fn requires(language: Language) -> &'static str {
    match language {
        Language::RustComponent => {
            "the Rust target wasm32-wasip2 (`rustup target add wasm32-wasip2`); \
             cargo fetches `wit-bindgen` from crates.io"
        }
        Language::Python => "componentize-py 0.25.1 (`pip install componentize-py==0.25.1`)",
        Language::Js => {
            "componentize-js 0.23.0 (`npm install -g @bytecodealliance/componentize-js@0.23.0`)"
        }
        Language::Rust | Language::Go | Language::C => "",
    }
}

/// Every file of a new project: (path in the project, contents).
fn files(language: Language, name: &str) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{language}}", &language.to_string())
            .replace("{{sdk}}", sdk_dir(language).trim_end_matches('/'))
            .replace("{{requires}}", requires(language))
            .into_bytes()
    };
    let mut files = vec![
        (
            PathBuf::from(PROJECT_FILE),
            fill(include_str!("templates/lattice.toml.tmpl")),
        ),
        (
            PathBuf::from(".gitignore"),
            fill(include_str!("templates/gitignore.tmpl")),
        ),
        (
            PathBuf::from("README.md"),
            fill(if language.is_component() {
                include_str!("templates/README.component.md.tmpl")
            } else {
                include_str!("templates/README.md.tmpl")
            }),
        ),
    ];
    match language {
        Language::Rust => {
            files.push((
                "Cargo.toml".into(),
                fill(include_str!("templates/Cargo.toml.tmpl")),
            ));
            files.push((
                "src/lib.rs".into(),
                fill(include_str!("templates/lib.rs.tmpl")),
            ));
            // The versions Lattice itself is tested with; cargo prunes the rest.
            files.push(("Cargo.lock".into(), sdk::WORKSPACE_LOCK.as_bytes().to_vec()));
            vendor_crate(
                &mut files,
                "vendor/lattice-actor",
                sdk::RUST_SDK,
                &[("lattice", "../lattice")],
            )?;
            vendor_crate(&mut files, "vendor/lattice", sdk::LATTICE_CRATE, &[])?;
        }
        Language::Go => {
            files.push(("go.mod".into(), fill(include_str!("templates/go.mod.tmpl"))));
            files.push((
                "main.go".into(),
                fill(include_str!("templates/main.go.tmpl")),
            ));
            copy(&mut files, "lattice-sdk", sdk::GO_SDK);
        }
        Language::C => {
            files.push((
                format!("{name}.c").into(),
                fill(include_str!("templates/actor.c.tmpl")),
            ));
            copy(&mut files, "lattice-sdk", sdk::C_SDK);
        }
        Language::RustComponent => {
            files.push((
                "Cargo.toml".into(),
                fill(include_str!("templates/Cargo.component.toml.tmpl")),
            ));
            files.push((
                "src/lib.rs".into(),
                fill(include_str!("templates/lib.component.rs.tmpl")),
            ));
            copy(&mut files, "wit", sdk::WIT);
        }
        Language::Python => {
            files.push(("app.py".into(), fill(include_str!("templates/app.py.tmpl"))));
            copy(&mut files, "wit", sdk::WIT);
        }
        Language::Js => {
            files.push(("app.js".into(), fill(include_str!("templates/app.js.tmpl"))));
            copy(&mut files, "wit", sdk::JS_WIT);
        }
    }
    Ok(files)
}

fn copy(files: &mut Vec<(PathBuf, Vec<u8>)>, under: &str, sdk: &[(&str, &[u8])]) {
    files.extend(
        sdk.iter()
            .map(|(path, bytes)| (Path::new(under).join(path), bytes.to_vec())),
    );
}

/// A workspace crate as a crate of its own: its sources, and its manifest with
/// the keys it inherits from the workspace written out and path dependencies
/// pointed at their vendored places (`paths`: dependency → new path).
fn vendor_crate(
    files: &mut Vec<(PathBuf, Vec<u8>)>,
    under: &str,
    sdk: &[(&str, &[u8])],
    paths: &[(&str, &str)],
) -> anyhow::Result<()> {
    let manifest = sdk
        .iter()
        .find(|(path, _)| *path == "Cargo.toml")
        .context("the embedded SDK has no Cargo.toml")?;
    let manifest = std::str::from_utf8(manifest.1).context("Cargo.toml is not UTF-8")?;
    let standalone = standalone_manifest(manifest, sdk::WORKSPACE_MANIFEST, paths)?;
    files.push((Path::new(under).join("Cargo.toml"), standalone.into_bytes()));
    files.extend(
        sdk.iter()
            .filter(|(path, _)| path.starts_with("src/"))
            .map(|(path, bytes)| (Path::new(under).join(path), bytes.to_vec())),
    );
    Ok(())
}

/// `member` (a workspace crate's manifest) with every `workspace = true` key
/// resolved against `workspace` (the root manifest), its dev-dependencies and
/// lints dropped (a vendored crate is only built), and the path dependencies
/// named in `paths` pointed elsewhere.
fn standalone_manifest(
    member: &str,
    workspace: &str,
    paths: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut member: toml::Table = toml::from_str(member).context("the SDK's Cargo.toml")?;
    let root: toml::Table = toml::from_str(workspace).context("the workspace Cargo.toml")?;
    let empty = toml::Table::new();
    let ws = root
        .get("workspace")
        .and_then(|w| w.as_table())
        .unwrap_or(&empty);
    let ws_package = ws
        .get("package")
        .and_then(|p| p.as_table())
        .unwrap_or(&empty);
    let ws_deps = ws
        .get("dependencies")
        .and_then(|d| d.as_table())
        .unwrap_or(&empty);
    let inherits = |v: &toml::Value| {
        v.as_table()
            .and_then(|t| t.get("workspace"))
            .and_then(|w| w.as_bool())
            .unwrap_or(false)
    };

    member.remove("dev-dependencies");
    member.remove("lints");
    if let Some(package) = member.get_mut("package").and_then(|p| p.as_table_mut()) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = ws_package
                    .get(key.as_str())
                    .cloned()
                    .with_context(|| format!("the workspace has no package.{key} to inherit"))?;
            }
        }
    }
    if let Some(deps) = member
        .get_mut("dependencies")
        .and_then(|d| d.as_table_mut())
    {
        for (name, value) in deps.iter_mut() {
            if inherits(value) {
                let mut resolved = match ws_deps.get(name.as_str()) {
                    Some(toml::Value::String(version)) => {
                        let mut t = toml::Table::new();
                        t.insert("version".into(), toml::Value::String(version.clone()));
                        t
                    }
                    Some(toml::Value::Table(t)) => t.clone(),
                    _ => bail!("the workspace has no dependency {name} to inherit"),
                };
                let local = value.as_table().cloned().unwrap_or_default();
                for (key, v) in local {
                    match key.as_str() {
                        "workspace" => {}
                        "features" => {
                            let mut all = resolved
                                .get("features")
                                .and_then(|f| f.as_array())
                                .cloned()
                                .unwrap_or_default();
                            all.extend(v.as_array().cloned().unwrap_or_default());
                            resolved.insert(key, toml::Value::Array(all));
                        }
                        _ => {
                            resolved.insert(key, v);
                        }
                    }
                }
                *value = toml::Value::Table(resolved);
            }
            if let Some(new_path) = paths.iter().find(|(dep, _)| dep == name).map(|(_, p)| *p)
                && let Some(t) = value.as_table_mut()
            {
                t.insert("path".into(), toml::Value::String(new_path.to_string()));
            }
        }
    }
    Ok(format!(
        "# Vendored by `lattice new`; regenerate the project to update it.\n{}",
        toml::to_string(&member).context("writing the vendored Cargo.toml")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_keys_are_written_out_and_paths_moved() {
        let root = r#"
            [workspace.package]
            version = "1.2.3"
            edition = "2024"
            [workspace.dependencies]
            serde = { version = "1", features = ["derive"] }
            hex = "0.4"
            lattice = { path = "lattice" }
        "#;
        let member = r#"
            [package]
            name = "x"
            version.workspace = true
            edition.workspace = true
            [dependencies]
            serde = { workspace = true, features = ["rc"], optional = true }
            hex.workspace = true
            lattice = { path = "../../lattice", default-features = false }
            [dev-dependencies]
            proptest = "1"
            [lints]
            workspace = true
        "#;
        let out = standalone_manifest(member, root, &[("lattice", "../lattice")]).unwrap();
        let t: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(t["package"]["version"].as_str(), Some("1.2.3"));
        assert_eq!(t["package"]["edition"].as_str(), Some("2024"));
        let serde = &t["dependencies"]["serde"];
        assert_eq!(serde["version"].as_str(), Some("1"));
        assert_eq!(serde["optional"].as_bool(), Some(true));
        let features: Vec<_> = serde["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(features, ["derive", "rc"]);
        assert_eq!(t["dependencies"]["hex"]["version"].as_str(), Some("0.4"));
        assert_eq!(
            t["dependencies"]["lattice"]["path"].as_str(),
            Some("../lattice")
        );
        assert_eq!(
            t["dependencies"]["lattice"]["default-features"].as_bool(),
            Some(false)
        );
        assert!(!t.contains_key("dev-dependencies") && !t.contains_key("lints"));
        assert!(!out.contains("workspace"), "{out}");
    }

    #[test]
    fn every_language_gets_its_sdk() {
        for (language, must) in [
            (Language::Rust, "vendor/lattice-actor/src/lib.rs"),
            (Language::Rust, "vendor/lattice/src/lib.rs"),
            (Language::Go, "lattice-sdk/actor.go"),
            (Language::C, "lattice-sdk/lattice.h"),
            (Language::RustComponent, "wit/actor.wit"),
            (Language::RustComponent, "src/lib.rs"),
        ] {
            let files = files(language, "demo").unwrap();
            assert!(
                files.iter().any(|(p, _)| p == Path::new(must)),
                "{language} lacks {must}"
            );
            assert!(files.iter().any(|(p, _)| p == Path::new(PROJECT_FILE)));
            assert!(
                !files
                    .iter()
                    .any(|(p, _)| p.to_string_lossy().ends_with("_test.go"))
            );
        }
    }
}
