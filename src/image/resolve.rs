//! The one way an image is resolved for a platform, whatever it is read
//! from: what the reference names -> (indexes, nested ones followed) ->
//! the platform's manifest -> its config, checked against each other. The
//! registry client ([`crate::image::inspect`]), OCI layouts and archives
//! and docker archives ([`crate::image::local`]) and skopeo's proxy
//! ([`crate::image::proxy`]) each implement [`Fetch`] and find what the
//! reference names; everything after that is [`resolve`].
//!
//! # Indexes inside indexes
//!
//! The image spec lets an index entry name another index. containers/image
//! (podman, skopeo) chooses one entry of an index (`ChooseInstance`: the
//! best platform match, else an entry without a platform) and, when that is
//! an index again, chooses again in it, without limit. mtbx follows nested
//! indexes the same way, with two differences, both for the same reason,
//! that indexes read from files or registries may be hostile:
//!
//! - The search is bounded: at most [`MAX_NESTING`] indexes below the top
//!   one, at most [`MAX_ENTRIES_SEEN`] entries looked at in all, and each
//!   nested index read and searched once however many entries name it
//!   (five levels of 40 entries naming one child would otherwise be 40^4
//!   searches). Past a bound the image is refused, not half-searched.
//! - Among an index's entries, the platform's own entry is tried first,
//!   then every entry without a platform that is an index, in order. When
//!   containers/image's single choice leads to an index without the
//!   platform, it fails; mtbx tries the next candidate. So whenever
//!   containers/image finds an image manifest for the platform, mtbx finds
//!   the same one, and it also finds images that sit in a later
//!   platform-less index. An entry without a platform that is an image
//!   manifest is not chosen: its platform is unknown until its config is
//!   read, and mtbx refuses rather than substitutes.
//!
//! Before there was one pipeline the registry refused nested indexes and
//! layouts followed them; now every source follows the rule above. skopeo's
//! proxy chooses the platform itself (its `GetManifest` never returns an
//! index, and refuses a nested one), so through the proxy the rule is
//! skopeo's and an index from it is refused.

use std::collections::HashSet;
use std::future::Future;

use crate::image::manifest::{
    Descriptor, ImageConfig, IndexEntry, Manifest, DOCKER_LIST, MAX_CONFIG_BYTES, OCI_INDEX,
};
use crate::image::platform::{self, Wanted};
use crate::image::reference::ImageRef;
use crate::image::resolved::{check_config, check_platform, platforms_of, ImageError, Inspection};

/// Indexes inside indexes followed at most (the spec allows nesting).
pub const MAX_NESTING: usize = 4;

/// Index entries looked at in all, over every nested index, before the
/// image is refused: a real index lists a few hundred, and the bound keeps
/// a hostile one (indexes whose entries all name one another) from costing
/// more than a moment.
pub const MAX_ENTRIES_SEEN: usize = 10_000;

/// Where an image's manifests and config are read from. Each
/// implementation checks what it reads against the descriptor's digest and
/// bounds it before reading it whole.
pub(crate) trait Fetch {
    /// Why something could not be read, or the image is refused.
    type Error: From<ImageError>;

    /// The manifest or index an index entry names (by digest), exactly as
    /// stored or served, at most [`crate::image::manifest::MAX_MANIFEST_BYTES`].
    fn manifest(&self, desc: &Descriptor) -> impl Future<Output = Result<Vec<u8>, Self::Error>>;

    /// The config `desc` names, at most `cap` bytes.
    fn config(&self, desc: &Descriptor, cap: u64) -> impl Future<Output = Result<Vec<u8>, Self::Error>>;

    /// The error refusing the image for `why` (nested indexes past a
    /// bound), of the kind the source's other refusals have: a layout's
    /// is about its files, a registry's about the image.
    fn refused(&self, why: String) -> Self::Error;
}

/// What the reference names, read by the source itself (a tag on the
/// registry, an entry of a layout's index.json, skopeo's choice).
pub(crate) struct Top {
    /// Its bytes, exactly as stored or served.
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: String,
}

/// Resolve `top` (from `src`) for `wanted` into the [`Inspection`] of
/// `image`; `shown` names the image in errors. Tags are the caller's.
pub(crate) async fn resolve<S: Fetch>(
    src: &S,
    shown: &str,
    image: ImageRef,
    top: Top,
    wanted: &Wanted,
) -> Result<Inspection, S::Error> {
    let malformed = |source| ImageError::Malformed { image: shown.to_string(), source };
    let Top { bytes: top_bytes, digest: top_digest } = top;
    tracing::debug!("top manifest {top_digest}");
    let (index, manifest_digest, manifest_bytes, manifest, entry_platform) =
        match Manifest::parse(&top_bytes).map_err(malformed)? {
            Manifest::Index { manifests, .. } => {
                let mut walk = Walk::default();
                let found = walk.select(src, shown, manifests, wanted).await;
                tracing::debug!("{} index entries looked at", walk.seen);
                match found? {
                    Some(s) => {
                        (Some(s.entries), s.entry.descriptor.digest, s.bytes, s.manifest, s.entry.platform)
                    }
                    None => {
                        let mut offered = walk.offered;
                        offered.dedup();
                        return Err(ImageError::NoPlatform {
                            image: shown.to_string(),
                            wanted: wanted.display(),
                            offered,
                        }
                        .into());
                    }
                }
            }
            m => (None, top_digest.clone(), top_bytes.clone(), m, None),
        };
    let Manifest::Image { media_type, config: config_desc, layers } = manifest else {
        unreachable!("the search returns image manifests only")
    };
    tracing::debug!("image manifest {manifest_digest}");
    check_config(shown, &config_desc)?;
    let config_bytes = src.config(&config_desc, MAX_CONFIG_BYTES).await?;
    tracing::debug!("config {}", config_desc.digest);
    let config = ImageConfig::parse(&config_bytes).map_err(malformed)?;
    check_platform(shown, entry_platform.as_ref(), &config, wanted)?;
    Ok(Inspection {
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
        tags: None,
    })
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The entry found: the index it is in, the entry, and its manifest as
/// read and as parsed.
struct Selected {
    entries: Vec<IndexEntry>,
    entry: IndexEntry,
    bytes: Vec<u8>,
    manifest: Manifest,
}

/// One index being searched.
struct Frame {
    entries: Vec<IndexEntry>,
    /// Its entries to try, best first.
    tries: Vec<IndexEntry>,
    next: usize,
    depth: usize,
}

/// What a search through nested indexes has done so far.
#[derive(Debug, Default)]
struct Walk {
    /// Digests of the indexes searched (without a match).
    searched: HashSet<String>,
    /// Entries looked at.
    seen: usize,
    /// Every platform seen, in order.
    offered: Vec<String>,
}

impl Walk {
    /// The entry serving `wanted`, searching depth first as the module
    /// documentation says; `None` when no index has it.
    async fn select<S: Fetch>(
        &mut self,
        src: &S,
        shown: &str,
        entries: Vec<IndexEntry>,
        wanted: &Wanted,
    ) -> Result<Option<Selected>, S::Error> {
        let malformed = |source| ImageError::Malformed { image: shown.to_string(), source };
        let mut stack = vec![self.frame(src, entries, wanted, 0)?];
        while let Some(frame) = stack.last_mut() {
            let Some(entry) = frame.tries.get(frame.next).cloned() else {
                stack.pop();
                continue;
            };
            frame.next += 1;
            if self.searched.contains(&entry.descriptor.digest) {
                continue; // an index searched already: it has nothing
            }
            let depth = frame.depth + 1;
            let bytes = src.manifest(&entry.descriptor).await?;
            match Manifest::parse(&bytes).map_err(malformed)? {
                Manifest::Index { manifests, .. } => {
                    self.searched.insert(entry.descriptor.digest.clone());
                    let inner = self.frame(src, manifests, wanted, depth)?;
                    stack.push(inner);
                }
                manifest => {
                    // The platform is the innermost entry's, where one was chosen.
                    let entries = std::mem::take(&mut frame.entries);
                    return Ok(Some(Selected { entries, entry, bytes, manifest }));
                }
            }
        }
        Ok(None)
    }

    /// Start searching the index `entries`, `depth` below the top one.
    fn frame<S: Fetch>(
        &mut self,
        src: &S,
        entries: Vec<IndexEntry>,
        wanted: &Wanted,
        depth: usize,
    ) -> Result<Frame, S::Error> {
        if depth > MAX_NESTING {
            return Err(src.refused(format!("indexes nest more than {MAX_NESTING} deep")));
        }
        self.seen += entries.len();
        if self.seen > MAX_ENTRIES_SEEN {
            return Err(src.refused(format!("its indexes list more than {MAX_ENTRIES_SEEN} entries in all")));
        }
        for p in platforms_of(&entries) {
            if !self.offered.contains(&p) {
                self.offered.push(p);
            }
        }
        let mut tries: Vec<IndexEntry> = platform::select(&entries, wanted).into_iter().cloned().collect();
        tries.extend(
            entries.iter().filter(|e| e.platform.is_none() && is_index(&e.descriptor.media_type)).cloned(),
        );
        Ok(Frame { entries, tries, next: 0, depth })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::emu::arch::Arch;
    use crate::image::manifest::{sha256_digest, OCI_CONFIG, OCI_MANIFEST};

    /// Blobs in memory, counting what is read.
    #[derive(Default)]
    struct Memory {
        blobs: HashMap<String, Vec<u8>>,
        reads: RefCell<Vec<String>>,
    }

    impl Memory {
        fn put(&mut self, media_type: &str, doc: Value) -> Value {
            let bytes = serde_json::to_vec(&doc).unwrap();
            let digest = sha256_digest(&bytes);
            let desc = json!({"mediaType": media_type, "digest": digest, "size": bytes.len()});
            self.blobs.insert(digest, bytes);
            desc
        }

        /// An image of `arch`; its index entry (with its platform).
        fn image(&mut self, arch: &str) -> Value {
            let config = self.put(OCI_CONFIG, json!({"architecture": arch, "os": "linux"}));
            let mut e = self.put(
                OCI_MANIFEST,
                json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}),
            );
            e["platform"] = json!({"architecture": arch, "os": "linux"});
            e
        }

        /// An index of `entries`; its entry, without a platform.
        fn index(&mut self, entries: Vec<Value>) -> Value {
            self.put(OCI_INDEX, json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        }

        fn resolve(&self, top: &Value, arch: &str) -> Result<Inspection, ImageError> {
            let digest = top["digest"].as_str().unwrap().to_string();
            let top = Top { bytes: self.blobs[&digest].clone(), digest };
            let wanted = Wanted { os: "linux".into(), arch: Arch::parse(arch).unwrap(), variant: None };
            let image =
                ImageRef { registry: "example.com".into(), repository: "x".into(), tag: None, digest: None };
            let fut = std::pin::pin!(resolve(self, "x", image, top, &wanted));
            match fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => unreachable!("memory never waits"),
            }
        }

        fn read(&self, desc: &Descriptor) -> Vec<u8> {
            self.reads.borrow_mut().push(desc.digest.clone());
            self.blobs[&desc.digest].clone()
        }
    }

    impl Fetch for Memory {
        type Error = ImageError;

        async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
            Ok(self.read(desc))
        }

        async fn config(&self, desc: &Descriptor, _cap: u64) -> Result<Vec<u8>, ImageError> {
            Ok(self.read(desc))
        }

        fn refused(&self, why: String) -> ImageError {
            ImageError::BadManifest { image: "x".into(), why }
        }
    }

    fn digest(e: &Value) -> &str {
        e["digest"].as_str().unwrap()
    }

    #[test]
    fn the_platforms_own_entry_comes_before_platform_less_indexes() {
        let mut m = Memory::default();
        let nested = m.image("arm64");
        let inner = m.index(vec![nested]);
        let direct = m.image("arm64");
        let amd = m.image("amd64");
        let top = m.index(vec![inner.clone(), amd, direct.clone()]);
        let found = m.resolve(&top, "arm64").unwrap();
        assert_eq!(found.manifest_digest, digest(&direct));
        assert!(!m.reads.borrow().contains(&digest(&inner).to_string()), "the inner index is not read");
        assert_eq!(found.top_digest, digest(&top));
    }

    #[test]
    fn a_platform_less_index_without_the_platform_leads_on_to_the_next() {
        let mut m = Memory::default();
        let (amd, arm, s390x) = (m.image("amd64"), m.image("arm64"), m.image("s390x"));
        let first = m.index(vec![amd, arm]);
        let second = m.index(vec![s390x.clone()]);
        let top = m.index(vec![first, second]);
        let found = m.resolve(&top, "s390x").unwrap();
        assert_eq!(found.manifest_digest, digest(&s390x));
        assert_eq!(found.platforms(), vec!["linux/s390x"], "the index the entry is in");
        match m.resolve(&top, "riscv64") {
            Err(ImageError::NoPlatform { offered, .. }) => {
                assert_eq!(offered, ["linux/amd64", "linux/arm64", "linux/s390x"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_image_entry_without_a_platform_is_not_chosen() {
        let mut m = Memory::default();
        let mut amd = m.image("amd64");
        amd["platform"] = Value::Null;
        let top = m.index(vec![amd]);
        assert!(matches!(m.resolve(&top, "amd64"), Err(ImageError::NoPlatform { .. })));
    }

    #[test]
    fn each_nested_index_is_read_once_and_the_search_is_bounded() {
        let mut m = Memory::default();
        let s390x = m.image("s390x");
        let mut entries = vec![s390x; 40];
        for _ in 0..MAX_NESTING {
            let child = m.index(entries);
            entries = vec![child; 40];
        }
        let top = m.index(entries);
        assert!(matches!(m.resolve(&top, "amd64"), Err(ImageError::NoPlatform { .. })));
        let reads = m.reads.borrow().clone();
        assert_eq!(reads.len(), MAX_NESTING, "one read per nested index: {reads:?}");

        // One level more than followed.
        let deeper = m.index(vec![top]);
        match m.resolve(&deeper, "amd64") {
            Err(ImageError::BadManifest { why, .. }) => assert!(why.contains("nest more than"), "{why}"),
            other => panic!("{other:?}"),
        }

        // Distinct indexes listing too many entries in all.
        let mut m = Memory::default();
        let s390x = m.image("s390x");
        let tops: Vec<Value> = (0..300)
            .map(|i| {
                let mut e = s390x.clone();
                e["platform"]["os.version"] = json!(i.to_string());
                m.index(vec![e; 40])
            })
            .collect();
        let top = m.index(tops);
        match m.resolve(&top, "amd64") {
            Err(ImageError::BadManifest { why, .. }) => assert!(why.contains("entries in all"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(m.reads.borrow().len() <= MAX_ENTRIES_SEEN / 40, "{}", m.reads.borrow().len());
    }
}
