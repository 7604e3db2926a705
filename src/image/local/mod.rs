//! Images in files, read by mtbx itself (no skopeo): `oci:DIR[:TAG]` (an
//! OCI image layout), `oci-archive:FILE[:TAG]` (the same in a tar, read in
//! place) and `docker-archive:FILE[:REF]` (what `docker save` and `podman
//! save` write). Each resolves to an [`Inspection`] through
//! [`crate::image::resolve`] exactly as a registry's image does (nested
//! indexes, the platform, the config checked against it) and streams its
//! blobs through [`BlobSource`], so pull stores them with the same checks
//! (size, digest, diff_id) as a download.
//!
//! - [`naming`]: local references, and the names their images get.
//! - [`oci`]: OCI layouts (`oci:`, `oci-archive:`).
//! - [`docker`]: docker-archive's manifest.json and the manifest made for
//!   it.
//! - [`files`]: a directory or a tar archive read in place, with names
//!   kept inside it.
//! - here: the errors of all of them, and an opened image's blobs.
//!
//! What is hostile here is the files' content: every index, manifest,
//! config and manifest.json read is capped, blob names are made from
//! checked digests (or, for docker-archive, kept inside the archive), and a
//! blob whose size is not its descriptor's is refused before it is read.

pub mod docker;
pub mod files;
pub mod naming;
pub mod oci;

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Classify, Kind};
use crate::image::compression::Compression;
use crate::image::manifest::Descriptor;
use crate::image::platform::Wanted;
use crate::image::reference::ImageRef;
use crate::image::resolved::{ImageError, Inspection};
use crate::image::source::{BlobSource, Chunks};
use files::Files;
pub use naming::{name, parse, LocalRef, Transport};
pub use oci::REF_NAME;

/// Chunks a blob is read in.
const CHUNK: usize = 256 << 10;

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
        Transport::Oci | Transport::OciArchive => oci::open(r, files, image, wanted),
        Transport::DockerArchive => docker::open(r, files, image, wanted),
    }
}

impl LocalSource {
    /// A blob as a stream of exactly its descriptor's size (the reader
    /// checks the digest): OCI blobs as they are, docker-archive layers
    /// uncompressed.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>, LocalError> {
        let path = self.files.path().to_path_buf();
        match self.layers.get(&desc.digest).cloned().unwrap_or(Blob::Oci) {
            Blob::Oci => {
                let name = oci::blob_name(&self.files, &desc.digest)?;
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

/// The result of a future that never waits. The local sources read files
/// in place (blocking, on a thread of their own), so the one resolve
/// pipeline, async for the registry's sake, is done at its first poll.
fn now<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("reading files never waits"),
    }
}
