//! The project's own OCI test images, written as OCI image layouts
//! (fixtures/oci/<name>/: oci-layout, index.json, blobs/sha256/*).
//!
//! `cargo run --example make_fixtures` writes them; tests read the
//! committed copies. Every layer is a real gzip tar (mtime 0, root-owned)
//! and every config's diff_ids are the real digests of the uncompressed
//! layers, so the same images serve the pull tests later.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The tag every fixture is stored under.
pub const TAG: &str = "1";

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

/// A layout being built: its blobs and its tagged top-level descriptor.
pub struct Layout {
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// Tagged top-level descriptors.
    pub tags: Vec<(&'static str, serde_json::Value)>,
}

impl Layout {
    fn new() -> Layout {
        Layout { blobs: BTreeMap::new(), tags: Vec::new() }
    }

    fn add(&mut self, media_type: &str, bytes: Vec<u8>) -> serde_json::Value {
        let d = sha256(&bytes);
        let desc = json!({"mediaType": media_type, "digest": d, "size": bytes.len()});
        self.blobs.insert(d, bytes);
        desc
    }

    /// A gzip tar with one file naming the platform, and its diff_id.
    fn layer(&mut self, media_type: &str, platform: &str, n: usize) -> (serde_json::Value, String) {
        let mut tar = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_mtime(0);
        dir.set_size(0);
        tar.append_data(&mut dir, "etc/", std::io::empty()).unwrap();
        let body = format!("{platform} layer {n}\n");
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o644);
        file.set_mtime(0);
        file.set_size(body.len() as u64);
        tar.append_data(&mut file, format!("etc/mtbx-fixture-{n}"), body.as_bytes()).unwrap();
        let raw = tar.into_inner().unwrap();
        let diff_id = sha256(&raw);
        let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
        gz.write_all(&raw).unwrap();
        (self.add(media_type, gz.finish().unwrap()), diff_id)
    }

    /// An image manifest for `arch`/`variant` whose config may claim
    /// another architecture (`config_arch`).
    fn image(
        &mut self,
        docker: bool,
        name: &str,
        arch: &str,
        variant: Option<&str>,
        config_arch: &str,
        layers: usize,
    ) -> serde_json::Value {
        let platform = match variant {
            Some(v) => format!("linux/{arch}/{v}"),
            None => format!("linux/{arch}"),
        };
        let (layer_type, config_type, manifest_type) = if docker {
            (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST)
        } else {
            (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST)
        };
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for n in 0..layers {
            let (d, id) = self.layer(layer_type, &platform, n);
            descs.push(d);
            diff_ids.push(id);
        }
        let mut config = json!({
            "architecture": config_arch,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {
                "Env": ["PATH=/usr/bin:/bin", format!("FIXTURE_PLATFORM={platform}")],
                "Labels": {"org.mtbx.fixture": name, "org.mtbx.platform": platform},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config = self.add(config_type, serde_json::to_vec(&config).unwrap());
        let manifest =
            json!({"schemaVersion": 2, "mediaType": manifest_type, "config": config, "layers": descs});
        self.add(manifest_type, serde_json::to_vec(&manifest).unwrap())
    }

    fn index(
        &mut self,
        docker: bool,
        entries: Vec<(serde_json::Value, &str, Option<&str>, &str)>,
    ) -> serde_json::Value {
        let manifests: Vec<serde_json::Value> = entries
            .into_iter()
            .map(|(mut desc, arch, variant, os)| {
                let mut p = json!({"architecture": arch, "os": os});
                if let Some(v) = variant {
                    p["variant"] = json!(v);
                }
                desc["platform"] = p;
                desc
            })
            .collect();
        let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
        let index = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
        self.add(media_type, serde_json::to_vec(&index).unwrap())
    }

    /// Write as an OCI image layout.
    pub fn write(&self, dir: &Path) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        for (d, b) in &self.blobs {
            std::fs::write(blobs.join(&d[7..]), b).unwrap();
        }
        std::fs::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").unwrap();
        let tops: Vec<serde_json::Value> = self
            .tags
            .iter()
            .map(|(tag, desc)| {
                let mut d = desc.clone();
                d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
                d
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": tops});
        std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    }
}

/// Platforms of the `multi` fixture: (arch, variant).
pub const MULTI: &[(&str, Option<&str>)] = &[
    ("amd64", None),
    ("arm64", Some("v8")),
    ("arm", Some("v7")),
    ("arm", Some("v6")),
    ("ppc64le", None),
    ("s390x", None),
    ("386", None),
    ("riscv64", None),
];

/// Every fixture by name.
pub fn all() -> Vec<(&'static str, Layout)> {
    let mut out = Vec::new();

    // An OCI index of many platforms plus an attestation-like entry.
    let mut l = Layout::new();
    let mut entries = Vec::new();
    for (arch, variant) in MULTI {
        let m = l.image(false, "multi", arch, *variant, arch, 2);
        entries.push((m, *arch, *variant, "linux"));
    }
    let att = l.image(false, "multi", "unknown", None, "unknown", 1);
    entries.push((att, "unknown", None, "unknown"));
    let top = l.index(false, entries);
    l.tags.push((TAG, top));
    out.push(("multi", l));

    // A Docker manifest list; arm64 without a variant, as many lists have.
    let mut l = Layout::new();
    let amd = l.image(true, "dockerlist", "amd64", None, "amd64", 1);
    let arm = l.image(true, "dockerlist", "arm64", None, "arm64", 1);
    let top = l.index(true, vec![(amd, "amd64", None, "linux"), (arm, "arm64", None, "linux")]);
    l.tags.push((TAG, top));
    out.push(("dockerlist", l));

    // A single-arch amd64 image: no index at all.
    let mut l = Layout::new();
    let top = l.image(false, "single", "amd64", None, "amd64", 1);
    l.tags.push((TAG, top));
    out.push(("single", l));

    // An index whose arm64 entry leads to an amd64 config.
    let mut l = Layout::new();
    let amd = l.image(false, "liar", "amd64", None, "amd64", 1);
    let lie = l.image(false, "liar", "arm64", Some("v8"), "amd64", 1);
    let top = l.index(false, vec![(amd, "amd64", None, "linux"), (lie, "arm64", Some("v8"), "linux")]);
    l.tags.push((TAG, top));
    out.push(("liar", l));

    // Only old ARM variants: v7 machines fall back to v6.
    let mut l = Layout::new();
    let v5 = l.image(false, "armold", "arm", Some("v5"), "arm", 1);
    let v6 = l.image(false, "armold", "arm", Some("v6"), "arm", 1);
    let top = l.index(false, vec![(v5, "arm", Some("v5"), "linux"), (v6, "arm", Some("v6"), "linux")]);
    l.tags.push((TAG, top));
    out.push(("armold", l));

    // Fedora's layout: a multi-arch tag and per-arch tags of the same images.
    let mut l = Layout::new();
    let amd = l.image(false, "fedora-toolbox", "amd64", None, "amd64", 1);
    let arm = l.image(false, "fedora-toolbox", "arm64", Some("v8"), "arm64", 1);
    let top = l.index(
        false,
        vec![(amd.clone(), "amd64", None, "linux"), (arm.clone(), "arm64", Some("v8"), "linux")],
    );
    l.tags.push(("42", top));
    l.tags.push(("42-x86_64", amd));
    l.tags.push(("42-aarch64", arm));
    out.push(("fedora-toolbox", l));

    out
}
