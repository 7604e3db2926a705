//! Images in files, made at test time: an OCI layout directory from an
//! [`Upload`], the same as an oci-archive, a docker-archive in the shape
//! `docker save` writes, hostile variants of them; and a PATH without a
//! given program (the reading side must not need skopeo).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::fixtures::sha256;
use super::real_registry::Upload;

/// Write `up` as an OCI layout at `dir`, its last manifest (the index, or
/// the one image) tagged `tag` in index.json.
pub fn write_layout(dir: &Path, up: &Upload, tag: &str) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for (d, b) in &up.blobs {
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
    }
    for (d, b, _) in &up.manifests {
        std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
    }
    let (d, b, media) = up.manifests.last().unwrap();
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": media, "digest": d, "size": b.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A tar of the directory `dir` (its contents at the archive's root).
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// A raw tar entry: (name, type, link, data).
pub type Raw<'a> = (&'a str, u8, &'a str, &'a [u8]);

/// A tar of raw entries, names and links written byte for byte (so
/// hostile ones too).
pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        bytes[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A docker-archive as `docker save` (25 and later) writes it: layers and
/// config as `blobs/sha256/<hex>`, which manifest.json names, and the
/// legacy `<id>/layer.tar` symbolic links to them, which it does not (podman
/// 4's reader takes a symbolic link's own size for the layer's); of one
/// image whose layers are the plain tars `layers`. Returns the archive, the
/// config digest and the diff_ids.
pub fn docker_archive(arch: &str, layers: &[Vec<u8>], repo_tag: &str) -> (Vec<u8>, String, Vec<String>) {
    let stored: Vec<(Vec<u8>, Vec<u8>)> = layers.iter().map(|l| (l.clone(), l.clone())).collect();
    docker_archive_stored(arch, &stored, repo_tag)
}

/// The same with each layer stored as given (compressed, say): pairs of
/// the plain tar (for its diff_id) and the bytes the archive holds.
pub fn docker_archive_stored(
    arch: &str,
    layers: &[(Vec<u8>, Vec<u8>)],
    repo_tag: &str,
) -> (Vec<u8>, String, Vec<String>) {
    let diff_ids: Vec<String> = layers.iter().map(|(plain, _)| sha256(plain)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let config_name = format!("blobs/sha256/{}", &config_digest[7..]);
    let mut names = Vec::new();
    let mut files: Vec<(String, u8, String, Vec<u8>)> = Vec::new();
    for ((_, l), d) in layers.iter().zip(&diff_ids) {
        let blob = format!("blobs/sha256/{}", &sha256(l)[7..]);
        files.push((blob.clone(), b'0', String::new(), l.clone()));
        files.push((format!("{}/layer.tar", &d[7..19]), b'2', format!("../{blob}"), Vec::new()));
        names.push(blob);
    }
    let manifest = serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": [repo_tag], "Layers": names}])).unwrap();
    files.push((config_name, b'0', String::new(), config));
    files.push(("manifest.json".into(), b'0', String::new(), manifest));
    let raw: Vec<Raw<'_>> = files.iter().map(|(n, k, l, d)| (n.as_str(), *k, l.as_str(), &d[..])).collect();
    (raw_tar(&raw), config_digest, diff_ids)
}

/// A directory whose PATH entries are every program of `PATH` but
/// `without` (symbolic links to them): what the reading side runs with, so
/// that a fallback to skopeo could not pass unnoticed.
pub struct PathWithout {
    pub dir: tempfile::TempDir,
}

impl PathWithout {
    pub fn new(without: &str) -> PathWithout {
        let dir = tempfile::Builder::new().prefix("mtbx-path-").tempdir().unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        for d in std::env::split_paths(&path) {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let name = e.file_name();
                let link = dir.path().join(&name);
                if name == without || link.symlink_metadata().is_ok() {
                    continue;
                }
                let _ = std::os::unix::fs::symlink(e.path(), &link);
            }
        }
        assert!(!dir.path().join(without).exists());
        PathWithout { dir }
    }

    /// The PATH value.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}
