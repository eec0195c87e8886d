//! Migrations are embedded with `sqlx::migrate!`; cargo must rebuild when a file is added.
//! The Rust guest SDK and the WIT are embedded for `waymark new`, which writes them into the
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
    collect(&root.join("guest-sdk/rust/src"), &mut files);
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
    println!(
        "cargo:rerun-if-changed={}",
        root.join("guest-sdk/rust/src").display()
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("guest_sdk.rs"), listing).expect("writing guest_sdk.rs");
}

/// Every `.rs` file under `dir`.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("reading the guest SDK")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}
