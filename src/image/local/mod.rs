//! Images in files, read by mtbx itself (no skopeo): `oci:DIR[:TAG]` (an
//! OCI image layout), `oci-archive:FILE[:TAG]` (the same in a tar, read in
//! place) and `docker-archive:FILE[:REF]` (what `docker save` and `podman
//! save` write). Each resolves to an [`Inspection`] exactly as a registry's
//! image does (the platform chosen from the layout's index by
//! [`crate::image::platform`], the config checked against it) and streams
//! its blobs through [`BlobSource`], so pull stores them with the same
//! checks (size, digest, diff_id) as a download.
//!
//! - [`files`]: a directory or a tar archive read in place, with names
//!   kept inside it.
//! - [`docker`]: docker-archive's manifest.json and the manifest made for
//!   it.
//!
//! What is hostile here is the files' content: every index, manifest,
//! config and manifest.json read is capped, blob names are made from
//! checked digests (or, for docker-archive, kept inside the archive), and a
//! blob whose size is not its descriptor's is refused before it is read.

pub mod docker;
pub mod files;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Classify, Kind};
use crate::image::compression::Compression;
use crate::image::manifest::{
    sha256_digest, Descriptor, ImageConfig, IndexEntry, Manifest, DOCKER_CONFIG, DOCKER_LIST,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, OCI_INDEX,
};
use crate::image::platform::{self, Wanted};
use crate::image::reference::{self, ImageRef, Parsed};
use crate::image::resolved::{check_config, check_platform, platforms_of, ImageError, Inspection};
use crate::image::source::{BlobSource, Chunks};
use files::Files;

/// The annotation an OCI layout's index.json names images by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Indexes inside indexes followed at most (the spec allows nesting).
const MAX_NESTING: usize = 4;

/// Index entries looked at in all, over every nested index, before the
/// layout is refused: a real layout lists a few hundred, and the bound
/// keeps a hostile one (indexes whose entries all name one another) from
/// costing more than a moment.
pub const MAX_ENTRIES_SEEN: usize = 10_000;

/// Chunks a blob is read in.
const CHUNK: usize = 256 << 10;

/// How many times its file size a compressed docker-archive layer may
/// expand in the pass that measures it (the size its descriptor needs),
/// so that a compression bomb ends that pass instead of stalling it. pull
/// applies its own, stricter limit (`MTBX_MAX_LAYER_EXPANSION`) when it
/// extracts the layer; this one only bounds the measuring.
const MAX_MEASURED_EXPANSION: u64 = 1000;

/// Which kind of file an image is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// An OCI image layout directory.
    Oci,
    /// An OCI image layout in a tar archive.
    OciArchive,
    /// A `docker save` archive.
    DockerArchive,
}

impl Transport {
    /// Its prefix in references.
    pub fn prefix(self) -> &'static str {
        match self {
            Transport::Oci => "oci:",
            Transport::OciArchive => "oci-archive:",
            Transport::DockerArchive => "docker-archive:",
        }
    }
}

/// A reference to an image in files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRef {
    /// The kind of file.
    pub transport: Transport,
    /// The directory or archive.
    pub path: PathBuf,
    /// `:TAG` (oci) or `:REF` (docker-archive), as given.
    pub tag: Option<String>,
}

/// Failures of reading images from files.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A reference that does not make sense.
    #[error("{0}")]
    BadReference(String),
    /// The directory or archive cannot be opened.
    #[error("cannot open {}", crate::text::quoted_path(.path))]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `oci:` of something that is not a directory.
    #[error("{} is not a directory; an oci: layout is a directory (use oci-archive: for a tar)", crate::text::quoted_path(.0))]
    NotADirectory(PathBuf),
    /// Not the kind of layout or archive the reference says.
    #[error("{} is not a usable image layout or archive: {why}", crate::text::quoted_path(.path))]
    NotAnArchive {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A name from the archive that leads outside it.
    #[error("{}: {} points outside the archive or layout; refusing it", crate::text::quoted_path(.path), crate::text::quoted(.name))]
    Escapes {
        /// The archive.
        path: PathBuf,
        /// The name.
        name: String,
    },
    /// A file the image needs is not there.
    #[error("{}: {} is missing (the layout or archive is incomplete)", crate::text::quoted_path(.path), crate::text::quoted(.name))]
    Missing {
        /// The layout or archive.
        path: PathBuf,
        /// The file.
        name: String,
    },
    /// An index, manifest or config larger than mtbx reads.
    #[error("{}: {} is {size} bytes, more than the {cap}-byte limit", crate::text::quoted_path(.path), crate::text::quoted(.name))]
    TooLarge {
        /// The layout or archive.
        path: PathBuf,
        /// The file.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        cap: u64,
    },
    /// Reading failed.
    #[error("{}: cannot read {}", crate::text::quoted_path(.path), crate::text::quoted(.name))]
    Read {
        /// The layout or archive.
        path: PathBuf,
        /// The file.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No image has the tag asked for.
    #[error("{} has no image tagged {tag:?}; it has: {}", crate::text::quoted_path(.path), list(.tags))]
    NoTag {
        /// The layout or archive.
        path: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags it has.
        tags: Vec<String>,
    },
    /// Several images and no tag to choose one.
    #[error("{} holds {count} images; name one: {}{}:TAG (tags: {})", crate::text::quoted_path(.path), .transport.prefix(), crate::text::escaped(&.path.to_string_lossy()), list(.tags))]
    WhichImage {
        /// The layout or archive.
        path: PathBuf,
        /// Its transport.
        transport: Transport,
        /// How many images.
        count: usize,
        /// Their tags.
        tags: Vec<String>,
    },
    /// A blob whose size is not its descriptor's.
    #[error("{}: blob {} is {have} bytes, but its descriptor says {want}", crate::text::quoted_path(.path), crate::text::quoted(.digest))]
    BlobSize {
        /// The layout or archive.
        path: PathBuf,
        /// The blob.
        digest: String,
        /// The descriptor's size.
        want: u64,
        /// The file's.
        have: u64,
    },
    /// A blob whose content is not its digest.
    #[error("{}: blob {} has digest {got}; the layout is corrupt", crate::text::quoted_path(.path), crate::text::quoted(.want))]
    Digest {
        /// The layout or archive.
        path: PathBuf,
        /// The descriptor's digest.
        want: String,
        /// The content's.
        got: String,
    },
    /// A digest mtbx cannot name a file by.
    #[error("{}: {} is not a sha256 digest", crate::text::quoted_path(.path), crate::text::quoted(.digest))]
    BadDigest {
        /// The layout or archive.
        path: PathBuf,
        /// The digest.
        digest: String,
    },
    /// A JSON file that does not parse.
    #[error("{}: {} is malformed", crate::text::quoted_path(.path), crate::text::quoted(.name))]
    Malformed {
        /// The layout or archive.
        path: PathBuf,
        /// The file.
        name: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The image is not what was asked for, or is broken.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// A path within a longer name (`oci:PATH`), its control characters
/// escaped.
fn shown_path(p: &Path) -> String {
    crate::text::escaped(&p.to_string_lossy())
}

/// Tags (from the layout's or archive's own files: hostile), escaped.
fn list(tags: &[String]) -> String {
    if tags.is_empty() {
        "none".into()
    } else {
        tags.iter().map(|t| crate::text::escaped(t)).collect::<Vec<_>>().join(", ")
    }
}

impl LocalError {
    fn open(path: &Path, source: std::io::Error) -> LocalError {
        LocalError::Open { path: path.to_path_buf(), source }
    }
}

impl Classify for LocalError {
    fn kind(&self) -> Kind {
        match self {
            LocalError::BadReference(_) | LocalError::NotADirectory(_) | LocalError::WhichImage { .. } => {
                Kind::BadInput
            }
            LocalError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Kind::NotFound
            }
            LocalError::NoTag { .. } => Kind::NotFound,
            LocalError::Image(e) => e.kind(),
            LocalError::Open { .. }
            | LocalError::NotAnArchive { .. }
            | LocalError::Escapes { .. }
            | LocalError::Missing { .. }
            | LocalError::TooLarge { .. }
            | LocalError::Read { .. }
            | LocalError::BlobSize { .. }
            | LocalError::Digest { .. }
            | LocalError::BadDigest { .. }
            | LocalError::Malformed { .. } => Kind::Failed,
        }
    }
}

/// The local reference `reference` names, if it names one: `None` for
/// anything else (a registry's image). The path and the tag part split at
/// the first `:`, as containers/image splits them.
pub fn parse(reference: &str) -> Option<Result<LocalRef, LocalError>> {
    let (transport, rest) = [Transport::Oci, Transport::OciArchive, Transport::DockerArchive]
        .into_iter()
        .find_map(|t| reference.strip_prefix(t.prefix()).map(|rest| (t, rest)))?;
    let (path, tag) = match rest.split_once(':') {
        Some((p, t)) => (p, Some(t.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Some(Err(LocalError::BadReference(format!(
            "{}: no path; write {}PATH[:TAG]",
            crate::text::quoted(reference),
            transport.prefix()
        ))));
    }
    if tag.as_deref() == Some("") {
        return Some(Err(LocalError::BadReference(format!(
            "{}: empty tag after ':'",
            crate::text::quoted(reference)
        ))));
    }
    Some(Ok(LocalRef { transport, path: PathBuf::from(path), tag }))
}

/// A name as Docker normalizes it (to match docker-archive's RepoTags
/// against REF, as containers/image does): `app` is
/// `docker.io/library/app:latest`.
fn docker_named(r: &str) -> Result<ImageRef, LocalError> {
    let bad = |e: reference::RefError| LocalError::BadReference(e.to_string());
    let mut image = match reference::parse(r).map_err(bad)? {
        Parsed::Qualified(i) => i,
        Parsed::Short { path, tag, digest } => ImageRef {
            registry: reference::DOCKER_HUB.into(),
            repository: if path.contains('/') { path } else { format!("library/{path}") },
            tag,
            digest,
        },
    };
    if image.tag.is_none() && image.digest.is_none() {
        image.tag = Some("latest".into());
    }
    Ok(image)
}

/// A RepoTags entry as podman names the image it loads: a short name goes
/// under `localhost/` (podman 4.3 stores `me/app:2` as
/// `localhost/me/app:2`, docs/podman.md).
fn podman_named(r: &str) -> Result<ImageRef, LocalError> {
    let bad = |e: reference::RefError| LocalError::BadReference(e.to_string());
    let mut image = match reference::parse(r).map_err(bad)? {
        Parsed::Qualified(i) => i,
        Parsed::Short { path, tag, digest } => {
            ImageRef { registry: "localhost".into(), repository: path, tag, digest }
        }
    };
    if image.tag.is_none() && image.digest.is_none() {
        image.tag = Some("latest".into());
    }
    Ok(image)
}

/// The image of a docker archive a reference means: the one whose
/// RepoTags has REF, or the only one.
fn chosen<'a>(
    r: &LocalRef,
    images: &'a [docker::ArchiveImage],
) -> Result<&'a docker::ArchiveImage, LocalError> {
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

/// The name an image of an OCI layout gets: `localhost/<base name of the
/// path>:<TAG>`, or the TAG itself when it is a whole qualified reference
/// (as buildah writes them). podman 4.3 names such a pull `localhost/<TAG>:latest`,
/// which makes every layout tagged `latest` the same image; see
/// docs/podman.md, "Names of local images".
fn oci_name(path: &Path, tag: Option<&str>) -> Result<ImageRef, LocalError> {
    if let Some(t) = tag.filter(|t| !reference::valid_tag(t)) {
        return match reference::parse(t) {
            Ok(Parsed::Qualified(i)) => Ok(i),
            _ => Err(LocalError::BadReference(format!(
                "{} is neither a tag nor a qualified image name; name the image by its tag",
                crate::text::quoted(t)
            ))),
        };
    }
    Ok(ImageRef { tag: Some(tag.unwrap_or("latest").into()), ..base_name(path)? })
}

/// `localhost/<base name>`, lowercased, `.tar` dropped.
fn base_name(path: &Path) -> Result<ImageRef, LocalError> {
    let base = path.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
    let base = base.strip_suffix(".tar").unwrap_or(&base).to_ascii_lowercase();
    let repo: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    if repo.is_empty() {
        return Err(LocalError::BadReference(format!(
            "cannot name an image after {}",
            crate::text::quoted_path(path)
        )));
    }
    Ok(ImageRef { registry: "localhost".into(), repository: repo, tag: None, digest: None })
}

/// The name the image of `r` is stored under (before pull appends a
/// foreign architecture): see [`oci_name`]; a docker-archive's image by
/// its first RepoTags entry as podman names it ([`podman_named`]), else by
/// REF, else after the file. Reads the layout's index (when the reference
/// has no tag) or the archive's manifest.json.
pub fn name(r: &LocalRef) -> Result<ImageRef, LocalError> {
    match (r.transport, &r.tag) {
        (Transport::Oci | Transport::OciArchive, Some(t)) => oci_name(&r.path, Some(t)),
        (Transport::Oci | Transport::OciArchive, None) => {
            let files = r.files()?;
            let entries = read_index(&files)?;
            let tag = match entries.as_slice() {
                [one] => ref_name(one),
                _ => None,
            };
            oci_name(&r.path, tag.as_deref())
        }
        (Transport::DockerArchive, _) => {
            let files = r.files()?;
            let images = read_docker_manifest(&files)?;
            let image = chosen(r, &images)?;
            match (image.repo_tags.as_ref().and_then(|t| t.first()), &r.tag) {
                (Some(t), _) | (None, Some(t)) => podman_named(t),
                (None, None) => Ok(ImageRef { tag: Some("latest".into()), ..base_name(&r.path)? }),
            }
        }
    }
}

impl LocalRef {
    fn files(&self) -> Result<Files, LocalError> {
        match self.transport {
            Transport::Oci => Files::dir(&self.path),
            Transport::OciArchive | Transport::DockerArchive => Files::tar(&self.path),
        }
    }
}

fn ref_name(e: &IndexEntry) -> Option<String> {
    e.descriptor.annotations.as_ref().and_then(|a| a.get(REF_NAME)).cloned()
}

fn which_image(r: &LocalRef, images: &[docker::ArchiveImage]) -> LocalError {
    LocalError::WhichImage {
        path: r.path.clone(),
        transport: r.transport,
        count: images.len(),
        tags: images.iter().flat_map(|i| i.repo_tags.clone().unwrap_or_default()).collect(),
    }
}

/// index.json's entries; the oci-layout file must say this is a layout.
fn read_index(files: &Files) -> Result<Vec<IndexEntry>, LocalError> {
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

fn read_docker_manifest(files: &Files) -> Result<Vec<docker::ArchiveImage>, LocalError> {
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

/// The file name of an OCI blob, from a digest that is checked first (a
/// digest is the only part of the name the layout gives).
fn blob_name(files: &Files, digest: &str) -> Result<String, LocalError> {
    match digest.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(format!("blobs/sha256/{hex}"))
        }
        _ => Err(LocalError::BadDigest { path: files.path().to_path_buf(), digest: digest.to_string() }),
    }
}

/// Where a layer's bytes are.
#[derive(Debug, Clone)]
enum Blob {
    /// An OCI blob, by digest.
    Oci,
    /// A docker-archive layer file, served uncompressed.
    Docker { name: String, compression: Compression },
}

/// An opened local image: where its blobs are.
#[derive(Debug, Clone)]
pub struct LocalSource {
    files: Files,
    /// docker-archive layers by the digest their descriptor has.
    layers: HashMap<String, Blob>,
}

/// Open the image `r` for the platform `wanted` and resolve it as a
/// registry's image is resolved; `image` is its [`name`]. Reads files
/// (blocking).
pub fn open(r: &LocalRef, image: ImageRef, wanted: &Wanted) -> Result<(LocalSource, Inspection), LocalError> {
    let files = r.files()?;
    match r.transport {
        Transport::Oci | Transport::OciArchive => open_oci(r, files, image, wanted),
        Transport::DockerArchive => open_docker(r, files, image, wanted),
    }
}

fn open_oci(
    r: &LocalRef,
    files: Files,
    image: ImageRef,
    wanted: &Wanted,
) -> Result<(LocalSource, Inspection), LocalError> {
    let source = LocalSource { files, layers: HashMap::new() };
    let entries = read_index(&source.files)?;
    let shown = format!("{}{}", r.transport.prefix(), shown_path(&r.path));
    let tags: Vec<String> = entries.iter().filter_map(ref_name).collect();
    let tagged: Vec<&IndexEntry> = match &r.tag {
        Some(t) => entries.iter().filter(|e| ref_name(e).as_deref() == Some(t.as_str())).collect(),
        None => entries.iter().collect(),
    };
    // What the reference names: one entry of index.json, or (no tag, and
    // platform entries without names, as some tools write) index.json itself.
    let (top_bytes, top_digest) = match (tagged.as_slice(), &r.tag) {
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
    let malformed = |source| ImageError::Malformed { image: shown.clone(), source };
    let (index, manifest_digest, manifest_bytes, entry_platform) = match Manifest::parse(&top_bytes)
        .map_err(malformed)?
    {
        Manifest::Index { manifests, .. } => {
            let mut offered = Vec::new();
            match source.select(manifests, wanted, &mut offered)? {
                Some((entries, entry, bytes)) => {
                    (Some(entries), entry.descriptor.digest.clone(), bytes, entry.platform.clone())
                }
                None => {
                    offered.dedup();
                    return Err(
                        ImageError::NoPlatform { image: shown, wanted: wanted.display(), offered }.into()
                    );
                }
            }
        }
        Manifest::Image { .. } => (None, top_digest.clone(), top_bytes.clone(), None),
    };
    let Manifest::Image { media_type, config: config_desc, layers } =
        Manifest::parse(&manifest_bytes).map_err(malformed)?
    else {
        unreachable!("select returns image manifests only")
    };
    check_config(&shown, &config_desc)?;
    let config_bytes = source.read_blob(&config_desc, MAX_CONFIG_BYTES)?;
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
    check_platform(&shown, entry_platform.as_ref(), &config, wanted)?;
    let found = Inspection {
        image,
        top_bytes,
        top_digest,
        index,
        manifest_digest,
        manifest_bytes,
        media_type,
        config_desc,
        layers,
        config_bytes,
        config,
        tags: Some(tags),
    };
    Ok((source, found))
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The index's entries, the entry chosen and its manifest's bytes.
type Selected = (Vec<IndexEntry>, IndexEntry, Vec<u8>);

/// What a search through nested indexes has done so far.
#[derive(Debug, Default)]
struct Walk {
    /// Digests of the indexes searched (without a match).
    searched: std::collections::HashSet<String>,
    /// Entries looked at.
    seen: usize,
}

impl LocalSource {
    /// The entry of `entries` serving `wanted`, following nested indexes
    /// (an entry that is an index, chosen by platform or without one) up to
    /// [`MAX_NESTING`] deep. `offered` collects every platform seen.
    ///
    /// Each nested index is read and searched once, however many entries
    /// name it (four levels of 40 entries naming one child would otherwise
    /// be 40^4 searches), and at most [`MAX_ENTRIES_SEEN`] entries are
    /// looked at in all.
    fn select(
        &self,
        entries: Vec<IndexEntry>,
        wanted: &Wanted,
        offered: &mut Vec<String>,
    ) -> Result<Option<Selected>, LocalError> {
        let mut walk = Walk::default();
        let found = self.select_in(entries, wanted, 0, offered, &mut walk);
        tracing::debug!("{} index entries looked at", walk.seen);
        found
    }

    fn select_in(
        &self,
        entries: Vec<IndexEntry>,
        wanted: &Wanted,
        depth: usize,
        offered: &mut Vec<String>,
        walk: &mut Walk,
    ) -> Result<Option<Selected>, LocalError> {
        let path = self.files.path().to_path_buf();
        if depth > MAX_NESTING {
            return Err(LocalError::NotAnArchive {
                path,
                why: format!("indexes nest more than {MAX_NESTING} deep"),
            });
        }
        walk.seen += entries.len();
        if walk.seen > MAX_ENTRIES_SEEN {
            return Err(LocalError::NotAnArchive {
                path,
                why: format!("its indexes list more than {MAX_ENTRIES_SEEN} entries in all"),
            });
        }
        for p in platforms_of(&entries) {
            if !offered.contains(&p) {
                offered.push(p);
            }
        }
        let malformed = |source| ImageError::Malformed { image: shown_path(&path), source };
        let mut tries: Vec<IndexEntry> = platform::select(&entries, wanted).into_iter().cloned().collect();
        tries.extend(
            entries.iter().filter(|e| e.platform.is_none() && is_index(&e.descriptor.media_type)).cloned(),
        );
        for entry in tries {
            if walk.searched.contains(&entry.descriptor.digest) {
                continue; // an index searched already: it has nothing
            }
            let bytes = self.read_blob(&entry.descriptor, MAX_MANIFEST_BYTES as u64)?;
            match Manifest::parse(&bytes).map_err(malformed)? {
                Manifest::Image { .. } => return Ok(Some((entries, entry, bytes))),
                Manifest::Index { manifests, .. } => {
                    walk.searched.insert(entry.descriptor.digest.clone());
                    if let Some(found) = self.select_in(manifests, wanted, depth + 1, offered, walk)? {
                        // The platform is the inner entry's, where one was chosen.
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(None)
    }

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

    /// A blob as a stream of exactly its descriptor's size (the reader
    /// checks the digest): OCI blobs as they are, docker-archive layers
    /// uncompressed.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>, LocalError> {
        let path = self.files.path().to_path_buf();
        match self.layers.get(&desc.digest).cloned().unwrap_or(Blob::Oci) {
            Blob::Oci => {
                let name = blob_name(&self.files, &desc.digest)?;
                let (reader, have) = self.files.open(&name)?;
                if have != desc.size {
                    return Err(LocalError::BlobSize {
                        path,
                        digest: desc.digest.clone(),
                        want: desc.size,
                        have,
                    });
                }
                Ok(reader)
            }
            Blob::Docker { name, compression } => {
                let (reader, _) = self.files.open(&name)?;
                let buffered = std::io::BufReader::with_capacity(CHUNK, reader);
                let decoded =
                    compression.decode(buffered).map_err(|source| LocalError::Read { path, name, source })?;
                Ok(Box::new(decoded))
            }
        }
    }
}

fn open_docker(
    r: &LocalRef,
    files: Files,
    image: ImageRef,
    wanted: &Wanted,
) -> Result<(LocalSource, Inspection), LocalError> {
    let images = read_docker_manifest(&files)?;
    let chosen = chosen(r, &images)?;
    let shown = format!("{}{}", r.transport.prefix(), shown_path(&r.path));
    let malformed = |source| ImageError::Malformed { image: shown.clone(), source };
    let config_bytes = files.read_small(&chosen.config, MAX_CONFIG_BYTES)?;
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
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
            media_type: docker::DOCKER_LAYER.into(),
            digest: diff_id.clone(),
            size,
            annotations: None,
        });
    }
    let manifest_bytes = docker::manifest(&config_desc, &layers);
    let manifest_digest = sha256_digest(&manifest_bytes);
    let found = Inspection {
        image,
        top_bytes: manifest_bytes.clone(),
        top_digest: manifest_digest.clone(),
        index: None,
        manifest_digest,
        manifest_bytes,
        media_type: crate::image::manifest::DOCKER_MANIFEST.into(),
        config_desc,
        layers,
        config_bytes,
        config,
        tags: Some(chosen.repo_tags.clone().unwrap_or_default()),
    };
    Ok((LocalSource { files, layers: blobs }, found))
}

impl BlobSource for LocalSource {
    type Error = LocalError;

    /// The file is read on a blocking thread and handed on in chunks; the
    /// reader checks the digest, this checks the length.
    async fn blob_into(
        &self,
        _image: &ImageRef,
        desc: &Descriptor,
        tx: &Chunks,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), LocalError> {
        let mut reader = self.open_blob(desc)?;
        let path = self.files.path().to_path_buf();
        let digest = desc.digest.clone();
        let (ctx, mut crx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let reading = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut total = 0u64;
            loop {
                let mut buf = bytes::BytesMut::zeroed(CHUNK);
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
                buf.truncate(n);
                if ctx.blocking_send(buf.freeze()).is_err() {
                    return Ok(total);
                }
            }
        });
        let mut hung_up = false;
        while let Some(chunk) = crx.recv().await {
            on_bytes(chunk.len() as u64);
            if tx.send(Ok(chunk)).await.is_err() {
                hung_up = true;
                break;
            }
        }
        drop(crx);
        let read = crate::error::joined(reading).await;
        let total =
            read.map_err(|source| LocalError::Read { path: path.clone(), name: digest.clone(), source })?;
        if !hung_up && total != desc.size {
            return Err(LocalError::BlobSize { path, digest, want: desc.size, have: total });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(r: &str) -> String {
        name(&parse(r).unwrap().unwrap()).unwrap().to_string()
    }

    #[test]
    fn references_split_at_the_first_colon_and_are_named() {
        let r = parse("oci:/srv/images/Rich_Layout:1").unwrap().unwrap();
        assert_eq!(
            (r.transport, r.path.to_str().unwrap(), r.tag.as_deref()),
            (Transport::Oci, "/srv/images/Rich_Layout", Some("1"))
        );
        assert_eq!(named("oci:/srv/images/Rich_Layout:1"), "localhost/rich-layout:1");
        assert_eq!(named("oci-archive:/tmp/img.tar:2"), "localhost/img:2");
        assert_eq!(named("oci:/x/y:example.com/app:3"), "example.com/app:3");
        assert_eq!(podman_named("me/app:3").unwrap().to_string(), "localhost/me/app:3");
        assert_eq!(podman_named("quay.io/me/app").unwrap().to_string(), "quay.io/me/app:latest");
        assert_eq!(docker_named("app").unwrap().to_string(), "docker.io/library/app:latest");
        assert!(parse("docker://x").is_none());
        assert!(parse("quay.io/x").is_none());
        assert!(matches!(parse("oci:"), Some(Err(LocalError::BadReference(_)))));
        assert!(name(&parse("oci:/x:not/a:ref:").unwrap().unwrap()).is_err());
    }

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
