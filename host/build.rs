// Migrations are embedded with `sqlx::migrate!`; cargo must rebuild when a file is added.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
