//! The manifest formats a registry serves (OCI index, Docker manifest list,
//! OCI and Docker v2 schema 2 image manifests) and the image config, parsed
//! from the exact bytes served so that digests stay checkable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Whether a config descriptor's media type is an image config. Anything
/// else (a layer type, an artifact's type) is not an image podman can
/// list: once stored, `podman images` fails for every image in the store,
/// so podman and skopeo refuse such manifests, and so does mtbx.
pub fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// Everything mtbx understands, sent as Accept on every manifest request:
/// the distribution registry answers 404 to a request for an OCI index
/// whose Accept lacks the OCI index type.
pub const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Manifests larger than this are refused (podman's limit too).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Configs larger than this are refused.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Annotations, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Platform {
    /// OCI architecture.
    pub architecture: String,
    /// OS, normally linux.
    pub os: String,
    /// Variant (v7, v8), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows images).
    #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
}

impl Platform {
    /// `arch[/variant]`, the ARCH column of `images` and `list`.
    pub fn arch(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{v}", self.architecture),
            None => self.architecture.clone(),
        }
    }

    /// `os/arch[/variant]`, as podman and skopeo print platforms.
    pub fn display(&self) -> String {
        match self.variant.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// One entry of an index or manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// The entry's descriptor fields.
    #[serde(flatten)]
    pub descriptor: Descriptor,
    /// Its platform; attestation and other artifacts may have none.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// A parsed top-level or per-platform manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// OCI index or Docker manifest list.
    Index {
        /// Media type as declared (or inferred).
        media_type: String,
        /// The entries.
        manifests: Vec<IndexEntry>,
    },
    /// One image.
    Image {
        /// Media type as declared (or inferred).
        media_type: String,
        /// The config descriptor.
        config: Descriptor,
        /// Layer descriptors, base first.
        layers: Vec<Descriptor>,
    },
}

/// A manifest mtbx cannot use; each says why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON of the expected shape.
    #[error("malformed manifest")]
    Malformed(#[source] Malformed),
    /// Docker schema 1 or another unsupported format.
    #[error("unsupported manifest: {0}")]
    Unsupported(String),
}

/// What is malformed about a manifest or config.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// The manifest is not JSON, or not of the manifest's types.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The config is not JSON, or not of the config's types.
    #[error("image config")]
    Config(#[source] serde_json::Error),
    /// Parsed, but is neither kind of manifest.
    #[error("neither an index nor an image manifest")]
    Shape,
}

/// By message: parser errors are not comparable, and tests compare
/// [`ManifestError`]s.
impl PartialEq for Malformed {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Malformed {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<Vec<IndexEntry>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

impl Manifest {
    /// Parse manifest bytes; the media type comes from the document or, as
    /// OCI allows it to be absent, from its shape.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.into()))?;
        if raw.schema_version != Some(2) {
            return Err(ManifestError::Unsupported(format!(
                "schemaVersion {} (only schema 2 manifests are supported)",
                raw.schema_version.map_or("missing".to_string(), |v| v.to_string())
            )));
        }
        match (raw.manifests, raw.config, raw.layers) {
            (Some(manifests), None, _) => {
                let media_type = raw.media_type.unwrap_or_else(|| OCI_INDEX.to_string());
                if media_type != OCI_INDEX && media_type != DOCKER_LIST {
                    return Err(ManifestError::Unsupported(format!("media type {media_type}")));
                }
                Ok(Manifest::Index { media_type, manifests })
            }
            (None, Some(config), Some(layers)) => {
                let media_type = raw.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
                if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
                    return Err(ManifestError::Unsupported(format!("media type {media_type}")));
                }
                Ok(Manifest::Image { media_type, config, layers })
            }
            _ => Err(ManifestError::Malformed(Malformed::Shape)),
        }
    }

    /// The declared or inferred media type.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Index { media_type, .. } | Manifest::Image { media_type, .. } => media_type,
        }
    }
}

/// The fields of an image config that inspect shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ImageConfig {
    /// OCI architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// Docker version that built it (Docker images).
    #[serde(default)]
    pub docker_version: Option<String>,
    /// Runtime config.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Layer diff IDs.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The `config` object of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RunConfig {
    /// Labels.
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Environment.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
}

/// The `rootfs` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The platform the config states.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            os_version: None,
        }
    }

    /// Parse config bytes.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(Malformed::Config(e)))
    }
}

/// sha256 of bytes as `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_manifest_shapes() {
        let idx = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":3,"platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}"#;
        match Manifest::parse(idx).unwrap() {
            Manifest::Index { media_type, manifests } => {
                assert_eq!(media_type, OCI_INDEX);
                assert_eq!(manifests[0].platform.as_ref().unwrap().display(), "linux/arm/v7");
            }
            m => panic!("{m:?}"),
        }
        let img = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:bb","size":1},"layers":[]}"#;
        assert_eq!(Manifest::parse(img).unwrap().media_type(), DOCKER_MANIFEST);
    }

    #[test]
    fn refused_manifests_say_why() {
        assert!(matches!(Manifest::parse(b"{\"schemaVersion\":1}"), Err(ManifestError::Unsupported(_))));
        assert!(matches!(Manifest::parse(b"not json"), Err(ManifestError::Malformed(_))));
        assert!(matches!(Manifest::parse(b"{\"schemaVersion\":2}"), Err(ManifestError::Malformed(_))));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(Manifest::parse(&big), Err(ManifestError::TooLarge(MAX_MANIFEST_BYTES + 1)));
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-nope","manifests":[]}"#;
        assert!(matches!(Manifest::parse(odd), Err(ManifestError::Unsupported(_))));
    }

    #[test]
    fn digest_format() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
