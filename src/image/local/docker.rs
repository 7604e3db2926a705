//! `docker save` archives (`docker-archive:`): manifest.json names each
//! image's config file, its tags and its layer files (plain tars in the old
//! layout, `blobs/sha256/...` in the newer, OCI-shaped one). There is no
//! manifest in the archive: one is made the way containers/image makes it
//! when podman loads such an archive (Docker schema 2; every layer served
//! uncompressed, named by its diff_id, with its uncompressed size, under
//! the gzip media type c/image writes), so mtbx stores the very manifest,
//! and so the very digest, that podman does (docs/podman.md). Which image
//! of the archive a reference means, and opening it through
//! [`crate::image::resolve`], are here too.

use std::collections::HashMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::files::Files;
use super::naming::docker_named;
use super::{now, Blob, LocalError, LocalRef, LocalSource, CHUNK};
use crate::image::compression::Compression;
use crate::image::manifest::{
    sha256_digest, Descriptor, ImageConfig, DOCKER_CONFIG, DOCKER_MANIFEST, MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
};
use crate::image::platform::Wanted;
use crate::image::reference::ImageRef;
use crate::image::resolve::{self, Fetch, Top};
use crate::image::resolved::{check_platform, ImageError, Inspection};

/// How many times its file size a compressed docker-archive layer may
/// expand in the pass that measures it (the size its descriptor needs),
/// so that a compression bomb ends that pass instead of stalling it. pull
/// applies its own, stricter limit (`MTBX_MAX_LAYER_EXPANSION`) when it
/// extracts the layer; this one only bounds the measuring.
const MAX_MEASURED_EXPANSION: u64 = 1000;

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

/// The image of a docker archive a reference means: the one whose
/// RepoTags has REF, or the only one.
pub(super) fn chosen<'a>(r: &LocalRef, images: &'a [ArchiveImage]) -> Result<&'a ArchiveImage, LocalError> {
    match &r.tag {
        Some(t) => {
            let want = docker_named(t)?;
            images
                .iter()
                .find(|i| i.repo_tags.iter().flatten().any(|tag| docker_named(tag).is_ok_and(|n| n == want)))
                .ok_or_else(|| LocalError::NoTag {
                    path: r.path.clone(),
                    tag: t.clone(),
                    tags: images.iter().flat_map(|i| i.repo_tags.clone().unwrap_or_default()).collect(),
                })
        }
        None => match images {
            [one] => Ok(one),
            _ => Err(which_image(r, images)),
        },
    }
}

fn which_image(r: &LocalRef, images: &[ArchiveImage]) -> LocalError {
    LocalError::WhichImage {
        path: r.path.clone(),
        transport: r.transport,
        count: images.len(),
        tags: images.iter().flat_map(|i| i.repo_tags.clone().unwrap_or_default()).collect(),
    }
}

pub(super) fn read_manifest(files: &Files) -> Result<Vec<ArchiveImage>, LocalError> {
    let bytes = files.read_small("manifest.json", MAX_MANIFEST_BYTES as u64).map_err(|e| match e {
        LocalError::Missing { path, .. } => LocalError::NotAnArchive {
            path,
            why: "it has no manifest.json, so it is not a docker archive (an OCI archive is oci-archive:)"
                .into(),
        },
        e => e,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LocalError::Malformed {
        path: files.path().to_path_buf(),
        name: "manifest.json".into(),
        source,
    })
}

pub(super) fn open(
    r: &LocalRef,
    files: Files,
    image: ImageRef,
    wanted: &Wanted,
) -> Result<(LocalSource, Inspection), LocalError> {
    let images = read_manifest(&files)?;
    let chosen = chosen(r, &images)?;
    let shown = r.shown();
    let malformed = |source| ImageError::Malformed { image: shown.clone(), source };
    let config_bytes = files.read_small(&chosen.config, MAX_CONFIG_BYTES)?;
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
    // Before the layers are measured (a pass that may decompress them
    // all), so another platform is refused at once; resolve checks again.
    check_platform(&shown, None, &config, wanted)?;
    let config_desc = Descriptor {
        media_type: DOCKER_CONFIG.into(),
        digest: sha256_digest(&config_bytes),
        size: config_bytes.len() as u64,
        annotations: None,
    };
    let diff_ids = config.rootfs.as_ref().map(|r| r.diff_ids.clone()).unwrap_or_default();
    if diff_ids.len() != chosen.layers.len() {
        return Err(ImageError::BadManifest {
            image: shown,
            why: format!(
                "manifest.json lists {} layers but the config {} diff_ids",
                chosen.layers.len(),
                diff_ids.len()
            ),
        }
        .into());
    }
    let path = r.path.clone();
    let mut blobs = HashMap::new();
    let mut layers = Vec::new();
    for (name, diff_id) in chosen.layers.iter().zip(&diff_ids) {
        let read_err = |source| LocalError::Read { path: path.clone(), name: name.clone(), source };
        let (mut reader, size) = files.open(name)?;
        let mut head = Vec::with_capacity(4);
        (&mut reader).take(4).read_to_end(&mut head).map_err(read_err)?;
        let compression = Compression::sniff(&head);
        // Served uncompressed, as c/image serves it: a compressed layer
        // is read once here for its uncompressed size.
        let size = if compression == Compression::None {
            size
        } else {
            let (reader, _) = files.open(name)?;
            let cap = size.saturating_mul(MAX_MEASURED_EXPANSION).max(1 << 20);
            let decoded =
                compression.decode(std::io::BufReader::with_capacity(CHUNK, reader)).map_err(read_err)?;
            let n = std::io::copy(&mut decoded.take(cap + 1), &mut std::io::sink()).map_err(read_err)?;
            if n > cap {
                return Err(LocalError::NotAnArchive {
                    path: path.clone(),
                    why: format!("layer {name} expands more than {MAX_MEASURED_EXPANSION} times its size"),
                });
            }
            n
        };
        blobs.insert(diff_id.clone(), Blob::Docker { name: name.clone(), compression });
        layers.push(Descriptor {
            media_type: DOCKER_LAYER.into(),
            digest: diff_id.clone(),
            size,
            annotations: None,
        });
    }
    let bytes = manifest(&config_desc, &layers);
    let digest = sha256_digest(&bytes);
    let archive = Archive { path: &path, config_bytes: &config_bytes };
    let mut found = now(resolve::resolve(&archive, &shown, image, Top { bytes, digest }, wanted))?;
    found.tags = Some(chosen.repo_tags.clone().unwrap_or_default());
    Ok((LocalSource { files, layers: blobs }, found))
}

/// A docker archive, as [`resolve`] reads it: the manifest made for it,
/// and the config read by name (its descriptor is made from its bytes).
struct Archive<'a> {
    path: &'a std::path::Path,
    config_bytes: &'a [u8],
}

impl Fetch for Archive<'_> {
    type Error = LocalError;

    /// manifest.json names configs and layers, never an index: the
    /// manifest made for the archive has no entries to follow.
    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, LocalError> {
        Err(self.refused(format!("{} is not in a docker archive", desc.digest)))
    }

    /// Read (capped) before the layers were measured, to refuse another
    /// platform before that costly pass.
    async fn config(&self, desc: &Descriptor, _cap: u64) -> Result<Vec<u8>, LocalError> {
        debug_assert_eq!(desc.digest, sha256_digest(self.config_bytes));
        Ok(self.config_bytes.to_vec())
    }

    fn refused(&self, why: String) -> LocalError {
        LocalError::NotAnArchive { path: self.path.to_path_buf(), why }
    }
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
