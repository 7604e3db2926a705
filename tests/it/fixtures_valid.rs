//! The committed OCI fixtures are what they claim: every blob hashes to
//! its name, every reference resolves, every diff_id is the digest of the
//! gunzipped layer. Regenerate with `cargo run --example make_fixtures`.

use std::io::Read;

use common::fixtures::sha256;
use common::registry::fixtures_root;
use serde_json::Value;

fn blob(dir: &std::path::Path, d: &str) -> Vec<u8> {
    std::fs::read(dir.join("blobs/sha256").join(&d[7..]))
        .unwrap_or_else(|_| panic!("{} lacks {d}", dir.display()))
}

fn check_manifest(dir: &std::path::Path, d: &str) {
    let m: Value = serde_json::from_slice(&blob(dir, d)).unwrap();
    if let Some(entries) = m["manifests"].as_array() {
        for e in entries {
            check_manifest(dir, e["digest"].as_str().unwrap());
        }
        return;
    }
    let config: Value = serde_json::from_slice(&blob(dir, m["config"]["digest"].as_str().unwrap())).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    for (l, id) in layers.iter().zip(diff_ids) {
        let gz = blob(dir, l["digest"].as_str().unwrap());
        assert_eq!(gz.len() as u64, l["size"].as_u64().unwrap());
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(sha256(&raw), id.as_str().unwrap());
    }
}

#[test]
fn every_fixture_is_consistent() {
    let mut n = 0;
    for layout in std::fs::read_dir(fixtures_root()).unwrap() {
        let dir = layout.unwrap().path();
        for b in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let b = b.unwrap();
            let bytes = std::fs::read(b.path()).unwrap();
            assert_eq!(sha256(&bytes), format!("sha256:{}", b.file_name().to_string_lossy()));
        }
        for (_, d) in common::registry::tags(&dir) {
            check_manifest(&dir, &d);
        }
        n += 1;
    }
    assert!(n >= 6);
}
