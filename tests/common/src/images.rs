//! Test images built at test time: layers from a list of entries (files
//! with modes and xattrs, directories, symlinks, hardlinks, whiteouts,
//! opaque directories, and hostile raw entries), compressed with gzip,
//! zstd or not at all, wrapped in OCI configs, manifests and an index.

use std::io::Write;

use serde_json::json;

use super::fixtures::sha256;
use super::real_registry::Upload;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// One tar entry.
#[derive(Clone)]
pub enum E {
    Dir(&'static str, u32),
    File(&'static str, u32, Vec<u8>),
    /// A file owned by uid/gid.
    Owned(&'static str, u32, u32, u32, Vec<u8>),
    /// A file with xattrs (PAX SCHILY.xattr records).
    Xattr(&'static str, Vec<u8>, &'static str, &'static [u8]),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// `.wh.<name>` in the given directory.
    Whiteout(&'static str),
    /// `.wh..wh..opq` in the given directory.
    Opaque(&'static str),
    /// A raw entry written byte for byte, names unchecked: (name, type, link, data).
    Raw(&'static str, u8, &'static str, Vec<u8>),
    /// A character device (major, minor).
    CharDev(&'static str, u32, u32),
    /// A file whose name needs a GNU long-name record (over 100 bytes).
    Long(String, Vec<u8>),
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    Gzip,
    Zstd,
    Plain,
}

fn header(name: &str, kind: u8, link: &str, size: u64, mode: u32, uid: u32, gid: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let b = h.as_mut_bytes();
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// The uncompressed tar of `entries`.
pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p, mode) => {
                b.append(&header(&format!("{p}/"), b'5', "", 0, *mode, 0, 0), &[][..]).unwrap()
            }
            E::File(p, mode, data) => {
                b.append(&header(p, b'0', "", data.len() as u64, *mode, 0, 0), &data[..]).unwrap()
            }
            E::Owned(p, mode, uid, gid, data) => {
                b.append(&header(p, b'0', "", data.len() as u64, *mode, *uid, *gid), &data[..]).unwrap()
            }
            E::Xattr(p, data, key, val) => {
                let k = format!("SCHILY.xattr.{key}");
                b.append_pax_extensions([(k.as_str(), *val)]).unwrap();
                b.append(&header(p, b'0', "", data.len() as u64, 0o644, 0, 0), &data[..]).unwrap()
            }
            E::Symlink(p, t) => b.append(&header(p, b'2', t, 0, 0o777, 0, 0), &[][..]).unwrap(),
            E::Hardlink(p, t) => b.append(&header(p, b'1', t, 0, 0o644, 0, 0), &[][..]).unwrap(),
            E::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                let wh = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
                b.append(&header(&wh, b'0', "", 0, 0o644, 0, 0), &[][..]).unwrap()
            }
            E::Opaque(d) => {
                b.append(&header(&format!("{d}/.wh..wh..opq"), b'0', "", 0, 0o644, 0, 0), &[][..]).unwrap()
            }
            E::Raw(p, kind, link, data) => {
                b.append(&header(p, *kind, link, data.len() as u64, 0o644, 0, 0), &data[..]).unwrap()
            }
            E::CharDev(p, major, minor) => {
                let mut h = header(p, b'3', "", 0, 0o666, 0, 0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap()
            }
            E::Long(p, data) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, p, &data[..]).unwrap()
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 3).unwrap(),
        Comp::Plain => tar.to_vec(),
    }
}

fn layer_media(comp: Comp) -> &'static str {
    match comp {
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        Comp::Plain => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// One platform's image, built.
pub struct Built {
    pub upload: Upload,
    pub config_digest: String,
    pub manifest_digest: String,
    pub manifest_size: usize,
    pub diff_ids: Vec<String>,
    pub platform: (String, Option<String>),
}

/// An image of `arch[/variant]` whose layers are `layers`.
pub fn image(arch: &str, variant: Option<&str>, layers: &[(Vec<E>, Comp)]) -> Built {
    image_from_tars(arch, variant, &layers.iter().map(|(e, c)| (tar_of(e), *c)).collect::<Vec<_>>())
}

/// An image from ready tars.
/// An amd64 image of one file of `mib` MiB of pseudo-random bytes (an
/// xorshift stream from `seed`), stored uncompressed: nothing in it
/// compresses, so a reader that buffered it would show in its memory.
pub fn incompressible_image(mib: usize, seed: u64) -> Built {
    let mut data = vec![0u8; mib << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    image("amd64", None, &[(vec![E::File("blob", 0o644, data)], Comp::Plain)])
}

pub fn image_from_tars(arch: &str, variant: Option<&str>, layers: &[(Vec<u8>, Comp)]) -> Built {
    image_from_tars_with_config(arch, variant, layers, json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// An image from ready tars, with `config` as the config's `config`
/// object (Env, Cmd, Labels).
pub fn image_from_tars_with_config(
    arch: &str,
    variant: Option<&str>,
    layers: &[(Vec<u8>, Comp)],
    config: serde_json::Value,
) -> Built {
    let run_config = config;
    let mut up = Upload::default();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, comp) in layers {
        diff_ids.push(sha256(tar));
        let blob = compress(tar, *comp);
        let d = sha256(&blob);
        descs.push(json!({"mediaType": layer_media(*comp), "digest": d, "size": blob.len()}));
        up.blobs.insert(d, blob);
    }
    let mut config = json!({
        "architecture": arch, "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config);
    up.blobs.insert(config_digest.clone(), config.clone());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let manifest_size = manifest.len();
    up.manifests.push((manifest_digest.clone(), manifest, OCI_MANIFEST.into()));
    Built {
        upload: up,
        config_digest,
        manifest_digest,
        manifest_size,
        diff_ids,
        platform: (arch.to_string(), variant.map(String::from)),
    }
}

/// An index over several platform images; the upload holds them all.
pub fn index(images: &[&Built]) -> Upload {
    let mut up = Upload::default();
    let mut entries = Vec::new();
    for b in images {
        up.blobs.extend(b.upload.blobs.clone());
        up.manifests.extend(b.upload.manifests.clone());
        let mut platform = json!({"architecture": b.platform.0, "os": "linux"});
        if let Some(v) = &b.platform.1 {
            platform["variant"] = json!(v);
        }
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": b.manifest_digest, "size": b.manifest_size, "platform": platform}));
    }
    let idx = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        .unwrap();
    up.manifests.push((sha256(&idx), idx, OCI_INDEX.into()));
    up
}

/// An index whose two entries, without platforms, are indexes: amd64 and
/// arm64 in the first, s390x in the second (an image only the second
/// nested index serves). The upload holds everything; the built images
/// are amd64, arm64, s390x in that order, and the digest is the top
/// index's.
pub fn nested_index() -> (Upload, Vec<Built>, String) {
    let built: Vec<Built> = ["amd64", "arm64", "s390x"]
        .iter()
        .map(|a| image(a, None, &[(vec![E::File("arch", 0o644, a.as_bytes().to_vec())], Comp::Gzip)]))
        .collect();
    let first = index(&[&built[0], &built[1]]);
    let second = index(&[&built[2]]);
    let mut up = first.clone();
    up.blobs.extend(second.blobs.clone());
    up.manifests.extend(second.manifests.clone());
    let inner = |u: &Upload| {
        let (d, b, media) = u.manifests.last().unwrap().clone();
        json!({"mediaType": media, "digest": d, "size": b.len()})
    };
    let outer = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner(&first), inner(&second)]}),
    )
    .unwrap();
    let digest = sha256(&outer);
    up.manifests.push((digest.clone(), outer, OCI_INDEX.into()));
    (up, built, digest)
}
