//! Write the project's OCI test images into fixtures/oci/ (see
//! tests/common/src/fixtures.rs): `cargo run --example make_fixtures`.

use common::fixtures;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oci");
    let _ = std::fs::remove_dir_all(&root);
    for (name, layout) in fixtures::all() {
        layout.write(&root.join(name));
        println!("wrote fixtures/oci/{name} ({} blobs)", layout.blobs.len());
    }
}
