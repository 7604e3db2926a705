//! Write the benchmark image as an OCI layout: an index with linux/arm64
//! and linux/amd64 entries over six gzip layers, about 250 MB of files
//! uncompressed, a mix of text-like and incompressible content in
//! thousands of files, as a distribution image has.
//!
//!     cargo run --release --example make_bench_image -- DIR

use std::io::Write;

use serde_json::json;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn layer(n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let words = ["lib", "usr", "share", "config", "value", "python", "arm64", "data", "toolbox", "mtbx"];
    let mut total = 0usize;
    let mut i: usize = 0;
    while total < 42 << 20 {
        let size = (rng.next() % (64 << 10)) as usize + 256;
        let mut data = vec![0u8; size];
        if i.is_multiple_of(2) {
            for chunk in data.chunks_mut(8) {
                let x = rng.next().to_le_bytes();
                chunk.copy_from_slice(&x[..chunk.len()]);
            }
        } else {
            let mut pos = 0;
            while pos < size {
                let w = words[(rng.next() % words.len() as u64) as usize].as_bytes();
                let take = w.len().min(size - pos);
                data[pos..pos + take].copy_from_slice(&w[..take]);
                pos += take;
                if pos < size {
                    data[pos] = if rng.next().is_multiple_of(8) { b'\n' } else { b' ' };
                    pos += 1;
                }
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("usr/lib/layer{n}/d{}/f{i}", i % 64)).unwrap();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        total += size;
        i += 1;
    }
    b.into_inner().unwrap()
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: make_bench_image DIR"));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut descs, mut diff_ids, mut total) = (Vec::new(), Vec::new(), 0usize);
    for n in 0..6 {
        let tar = layer(n, &mut rng);
        total += tar.len();
        diff_ids.push(sha(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&gz), "size": gz.len()}));
    }
    let mut entries = Vec::new();
    for arch in ["arm64", "amd64"] {
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
            "config": {"Env": ["PATH=/usr/bin"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
            "layers": descs,
        }))
        .unwrap();
        entries.push(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest),
            "size": manifest.len(), "platform": {"architecture": arch, "os": "linux"}}),
        );
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let idx = put(&index);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": idx, "size": index.len(), "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let compressed: u64 = descs.iter().map(|d| d["size"].as_u64().unwrap()).sum();
    println!("{} layers, {} MB uncompressed, {} MB compressed", descs.len(), total >> 20, compressed >> 20);
}
