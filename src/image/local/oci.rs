//! OCI image layouts, as directories (`oci:`) or tar archives
//! (`oci-archive:`): index.json names the images by the
//! `org.opencontainers.image.ref.name` annotation, and every blob is
//! a file named by its digest.

use std::collections::HashMap;

use super::files::Files;
use super::{now, shown_path, LocalError, LocalRef, LocalSource};
use crate::image::manifest::{sha256_digest, Descriptor, IndexEntry, Manifest, MAX_MANIFEST_BYTES};
use crate::image::platform::Wanted;
use crate::image::reference::ImageRef;
use crate::image::resolve::{self, Fetch, Top};
use crate::image::resolved::{ImageError, Inspection};

/// The annotation an OCI layout's index.json names images by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub(super) fn open(
    r: &LocalRef,
    files: Files,
    image: ImageRef,
    wanted: &Wanted,
) -> Result<(LocalSource, Inspection), LocalError> {
    let source = LocalSource { files, layers: HashMap::new() };
    let entries = read_index(&source.files)?;
    let shown = r.shown();
    let tags: Vec<String> = entries.iter().filter_map(ref_name).collect();
    let tagged: Vec<&IndexEntry> = match &r.tag {
        Some(t) => entries.iter().filter(|e| ref_name(e).as_deref() == Some(t.as_str())).collect(),
        None => entries.iter().collect(),
    };
    // What the reference names: one entry of index.json, or (no tag, and
    // platform entries without names, as some tools write) index.json itself.
    let (bytes, digest) = match (tagged.as_slice(), &r.tag) {
        ([one], _) => {
            (source.read_blob(&one.descriptor, MAX_MANIFEST_BYTES as u64)?, one.descriptor.digest.clone())
        }
        ([], Some(t)) => return Err(LocalError::NoTag { path: r.path.clone(), tag: t.clone(), tags }),
        ([], None) => {
            return Err(LocalError::NotAnArchive {
                path: r.path.clone(),
                why: "its index.json lists no image".into(),
            })
        }
        (many, None) if tags.is_empty() && many.iter().all(|e| e.platform.is_some()) => {
            let bytes = source.files.read_small("index.json", MAX_MANIFEST_BYTES as u64)?;
            let digest = sha256_digest(&bytes);
            (bytes, digest)
        }
        (many, _) => {
            return Err(LocalError::WhichImage {
                path: r.path.clone(),
                transport: r.transport,
                count: many.len(),
                tags,
            })
        }
    };
    let layout = Layout { source: &source, path: &r.path };
    let mut found = now(resolve::resolve(&layout, &shown, image, Top { bytes, digest }, wanted))?;
    found.tags = Some(tags);
    Ok((source, found))
}

/// A layout, as [`resolve`] reads it.
struct Layout<'a> {
    source: &'a LocalSource,
    path: &'a std::path::Path,
}

impl Fetch for Layout<'_> {
    type Error = LocalError;

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, LocalError> {
        self.source.read_blob(desc, MAX_MANIFEST_BYTES as u64)
    }

    async fn config(&self, desc: &Descriptor, cap: u64) -> Result<Vec<u8>, LocalError> {
        self.source.read_blob(desc, cap)
    }

    fn refused(&self, why: String) -> LocalError {
        LocalError::NotAnArchive { path: self.path.to_path_buf(), why }
    }
}

impl LocalSource {
    /// A small OCI blob, whole: size and digest checked.
    fn read_blob(&self, desc: &Descriptor, cap: u64) -> Result<Vec<u8>, LocalError> {
        let name = blob_name(&self.files, &desc.digest)?;
        let path = self.files.path().to_path_buf();
        if desc.size > cap {
            return Err(LocalError::TooLarge { path, name, size: desc.size, cap });
        }
        let (_, have) = self.files.open(&name)?;
        if have != desc.size {
            return Err(LocalError::BlobSize { path, digest: desc.digest.clone(), want: desc.size, have });
        }
        let bytes = self.files.read_small(&name, cap)?;
        let got = sha256_digest(&bytes);
        if got != desc.digest {
            return Err(LocalError::Digest { path, want: desc.digest.clone(), got });
        }
        Ok(bytes)
    }
}

pub(super) fn ref_name(e: &IndexEntry) -> Option<String> {
    e.descriptor.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned()
}

/// index.json's entries; the oci-layout file must say this is a layout.
pub(super) fn read_index(files: &Files) -> Result<Vec<IndexEntry>, LocalError> {
    let layout = files.read_small("oci-layout", 4096).map_err(|e| match e {
        LocalError::Missing { path, .. } => LocalError::NotAnArchive {
            path,
            why: "it has no oci-layout file, so it is not an OCI layout".into(),
        },
        e => e,
    })?;
    let _: serde_json::Value = serde_json::from_slice(&layout).map_err(|source| LocalError::Malformed {
        path: files.path().to_path_buf(),
        name: "oci-layout".into(),
        source,
    })?;
    let bytes = files.read_small("index.json", MAX_MANIFEST_BYTES as u64)?;
    let malformed =
        |source| ImageError::Malformed { image: format!("{}/index.json", shown_path(files.path())), source };
    match Manifest::parse(&bytes).map_err(malformed)? {
        Manifest::Index { manifests, .. } => Ok(manifests),
        Manifest::Image { .. } => Err(LocalError::NotAnArchive {
            path: files.path().to_path_buf(),
            why: "its index.json is a manifest, not an index".into(),
        }),
    }
}

/// The file name of an OCI blob, from a digest that is checked first (a
/// digest is the only part of the name the layout gives).
pub(super) fn blob_name(files: &Files, digest: &str) -> Result<String, LocalError> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(format!("blobs/sha256/{hex}"))
        }
        _ => Err(LocalError::BadDigest { path: files.path().to_path_buf(), digest: digest.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::image::local::{name, open, parse};

    #[test]
    fn blob_names_come_only_from_valid_digests() {
        let d = tempfile::tempdir().unwrap();
        let f = Files::dir(d.path()).unwrap();
        assert_eq!(
            blob_name(&f, &format!("sha256:{}", "a".repeat(64))).unwrap(),
            format!("blobs/sha256/{}", "a".repeat(64))
        );
        assert!(blob_name(&f, "sha256:../../etc/passwd").is_err());
        assert!(blob_name(&f, &format!("sha256:{}/..", "a".repeat(61))).is_err());
        assert!(blob_name(&f, "md5:abc").is_err());
    }

    #[test]
    fn platforms_are_chosen_from_a_layout_index_as_from_a_registry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oci/multi");
        let r = parse(&format!("oci:{}:1", dir.display())).unwrap().unwrap();
        let want = |a: &str| Wanted {
            os: "linux".into(),
            arch: crate::emu::arch::Arch::parse(a).unwrap(),
            variant: None,
        };
        let (_, found) = open(&r, name(&r).unwrap(), &want("arm64")).unwrap();
        assert_eq!(found.config.architecture, "arm64");
        assert!(found.platforms().len() > 2);
        match open(&r, name(&r).unwrap(), &want("loong64")) {
            Err(LocalError::Image(ImageError::NoPlatform { offered, .. })) => {
                assert!(offered.iter().any(|p| p.starts_with("linux/arm64")), "{offered:?}")
            }
            other => panic!("{other:?}"),
        }
        let none = parse(&format!("oci:{}:2", dir.display())).unwrap().unwrap();
        assert!(matches!(open(&none, name(&none).unwrap(), &want("arm64")), Err(LocalError::NoTag { .. })));
    }
}
