//! Rebuilds the crate when a migration is added: `sqlx::migrate!` alone notices edits to the files
//! it embedded, not new files in the directory.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
