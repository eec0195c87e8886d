//! Migrations are embedded with `sqlx::migrate!`; cargo must rebuild when a file is added.
//! The guest SDKs (Rust and TypeScript) and the WIT are embedded for `waymark new`, which writes them into the
//! module it scaffolds: `guest_sdk.rs` in `OUT_DIR` lists each file with its `include_str!`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_owned();
    let mut files = vec![
        root.join("wit/waymark.wit"),
        root.join("guest-sdk/rust/Cargo.toml"),
        root.join("guest-sdk/rust/Cargo.lock"),
    ];
    collect(&root.join("guest-sdk/rust/src"), &["rs"], &mut files);
    // The TypeScript SDK: its sources, build script and package files (not its tests or
    // node_modules).
    for file in ["package.json", "tsconfig.json", "README.md"] {
        let path = root.join("guest-sdk/ts").join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_file() {
            files.push(path);
        }
    }
    collect(&root.join("guest-sdk/ts/src"), &["ts"], &mut files);
    collect(&root.join("guest-sdk/ts/bin"), &["mjs"], &mut files);
    files.sort();
    let mut listing = String::from(
        "/// The guest SDK's files and the WIT, by path relative to the repository root.\n\
         pub const SDK_FILES: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).expect("under the root");
        listing.push_str(&format!(
            "    ({:?}, include_str!({:?})),\n",
            relative.to_string_lossy(),
            file.display().to_string()
        ));
    }
    listing.push_str("];\n");
    for dir in ["guest-sdk/rust/src", "guest-sdk/ts/src", "guest-sdk/ts/bin"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("guest_sdk.rs"), listing).expect("writing guest_sdk.rs");
}

/// Every file under `dir` with one of `extensions`.
fn collect(dir: &Path, extensions: &[&str], files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reading the guest SDK")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, extensions, files);
        } else if path
            .extension()
            .is_some_and(|ext| extensions.iter().any(|e| ext == *e))
        {
            files.push(path);
        }
    }
}
