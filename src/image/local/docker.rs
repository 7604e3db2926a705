//! `docker save` archives (`docker-archive:`): manifest.json names each
//! image's config file, its tags and its layer files (plain tars in the old
//! layout, `blobs/sha256/...` in the newer, OCI-shaped one). There is no
//! manifest in the archive: one is made the way containers/image makes it
//! when podman loads such an archive (Docker schema 2; every layer served
//! uncompressed, named by its diff_id, with its uncompressed size, under
//! the gzip media type c/image writes), so mtbx stores the very manifest,
//! and so the very digest, that podman does (docs/podman.md).

use serde::{Deserialize, Serialize};

use crate::image::manifest::{Descriptor, DOCKER_CONFIG, DOCKER_MANIFEST};

/// The media type containers/image gives docker-archive layers, whatever
/// they are (it serves them uncompressed).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One image of manifest.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveImage {
    /// The config file's name in the archive.
    pub config: String,
    /// Its tags, as `docker save` recorded them.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Layer files, base first.
    pub layers: Vec<String>,
}

/// A descriptor in the order and shape c/image serializes schema 2.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2Descriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Schema2Descriptor<'a>,
    layers: Vec<Schema2Descriptor<'a>>,
}

/// The manifest bytes for a config and uncompressed layers, byte for byte
/// as c/image writes them (compact JSON, its field order).
pub fn manifest(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
    fn d<'a>(x: &'a Descriptor, media_type: &'static str) -> Schema2Descriptor<'a> {
        Schema2Descriptor { media_type, size: x.size, digest: &x.digest }
    }
    let m = Schema2 {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: d(config, DOCKER_CONFIG),
        layers: layers.iter().map(|l| d(l, DOCKER_LAYER)).collect(),
    };
    serde_json::to_vec(&m).expect("a manifest serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_the_one_podman_stores() {
        // What podman 4.3 stored for an archive `podman save --format
        // docker-archive` wrote (a one-layer image), byte for byte.
        let config = Descriptor {
            media_type: String::new(),
            digest: "sha256:7fa37a2041e2503f8e2d4b2f1562e00f96a0beff6139da9ac02f34ac1e6e8602".into(),
            size: 328,
            annotations: None,
        };
        let layer = Descriptor {
            media_type: String::new(),
            digest: "sha256:bf632f8fe3e9d6513317f72b65c525d47421e34b303c2134ab040556b97107ad".into(),
            size: 2560,
            annotations: None,
        };
        let m = manifest(&config, &[layer]);
        assert_eq!(
            String::from_utf8(m.clone()).unwrap(),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":328,"digest":"sha256:7fa37a2041e2503f8e2d4b2f1562e00f96a0beff6139da9ac02f34ac1e6e8602"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2560,"digest":"sha256:bf632f8fe3e9d6513317f72b65c525d47421e34b303c2134ab040556b97107ad"}]}"#
        );
        assert_eq!(
            crate::image::manifest::sha256_digest(&m),
            "sha256:4d53cde95837dd13d4f56d87c8ed44db8a799b9bc0a3e98bfafb210374d43324"
        );
    }
}
