//! Apply a layer's tar stream to a layer directory, in one pass, without
//! ever writing outside that directory, and record the tar-split metadata
//! on the way. `stream` reads the tar and writes tar-split; `applier`
//! decides what each entry becomes on disk. They meet only in [`apply`].
//!
//! Safety rules, each a refusal with the entry's name in the message:
//! - names and hardlink targets with `..` components (leading `/` is
//!   dropped, as containers/storage joins names under the root);
//! - anything reached through a symlink that leads out of the layer: every
//!   parent directory is opened with openat2(RESOLVE_BENEATH), which the
//!   kernel refuses with EXDEV for absolute symlinks and `..` escapes;
//! - the final component is never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW);
//! - PAX records over 1 MiB, names over 64 KiB and entries over 1 TiB;
//! - a layer that expands past its limit or runs the disk low
//!   ([`super::limits`]).
//!
//! Memory is bounded: contents stream through a fixed buffer; only the
//! directory list (to set their times last) and, for vfs, the paths of the
//! layer (for opaque directories) grow, with the number of entries.

mod applier;
mod stream;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::BorrowedFd;

pub use applier::remove_at;

use super::limits::{Expansion, Guarded, LimitError};
use super::tarsplit::TarSplitWriter;
use crate::error::{Classify, Kind};

/// No real layer holds a single file this big; a header that says so is
/// corrupt or hostile.
pub const MAX_ENTRY: u64 = 1 << 40;

/// How whiteouts are represented in the layer directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// overlayfs: `.wh.X` becomes a 0/0 character device X, an opaque
    /// directory gets this xattr set to "y".
    Overlay {
        /// `trusted.overlay.opaque`, or `user.overlay.opaque` rootless.
        opaque_xattr: &'static str,
    },
    /// vfs: the layer is a copy of its parent; whiteouts delete.
    Vfs,
}

/// Settings for one layer.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Whiteout representation.
    pub whiteouts: Whiteouts,
    /// In a user namespace: device nodes cannot be created and are skipped
    /// (as podman skips them rootless); xattrs the kernel refuses are skipped.
    pub rootless: bool,
    /// How far the layer may expand beyond `compressed_size`.
    pub expansion: Expansion,
    /// The layer blob's size, which bounds its uncompressed size.
    pub compressed_size: u64,
}

/// What applying a layer learned.
#[derive(Debug, Default, Clone)]
pub struct ApplyStats {
    /// Owners seen (layers.json `uidset`).
    pub uids: BTreeSet<u32>,
    /// Groups seen (`gidset`).
    pub gids: BTreeSet<u32>,
    /// Device nodes skipped because they cannot be created here.
    pub skipped_devices: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A name or link target that climbs out with `..`.
    #[error("layer entry \"{0}\" climbs out of the layer with \"..\"; refusing this layer")]
    Traversal(String),
    /// A path that resolves through a symlink pointing out of the layer.
    #[error("layer entry \"{0}\" goes through a symlink that leads out of the layer; refusing this layer")]
    Escape(String),
    /// A size beyond reason.
    #[error("layer entry \"{name}\" claims {size} bytes, beyond the limit of {limit}; refusing this layer")]
    TooLarge {
        /// The entry.
        name: String,
        /// What it claims.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a tar stream, or a truncated one.
    #[error("the layer is not a valid tar stream: {0}")]
    Corrupt(String),
    /// A PAX extended header that does not parse.
    #[error("the layer is not a valid tar stream: bad PAX record: {0}")]
    BadPax(#[source] std::io::Error),
    /// An owner a rootless user's id range does not cover.
    #[error(
        "cannot extract \"{name}\": owner {uid}:{gid} is outside this user's id range; \
         give the user a larger range in /etc/subuid and /etc/subgid"
    )]
    OwnerOutOfRange {
        /// The entry.
        name: String,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// The kernel's refusal (EINVAL).
        #[source]
        source: nix::errno::Errno,
    },
    /// An entry type mtbx does not extract.
    #[error("layer entry \"{name}\" has unsupported type '{kind}'")]
    Unsupported {
        /// The entry.
        name: String,
        /// Its type flag.
        kind: char,
    },
    /// A system call failed.
    #[error("cannot extract \"{name}\": {source}")]
    Io {
        /// The entry.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the stream failed (network, decompression, digest).
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// The layer grew past its limit or the disk is nearly full.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl Classify for ApplyError {
    fn kind(&self) -> Kind {
        Kind::Failed
    }
}

fn io_err(name: &[u8], e: impl Into<std::io::Error>) -> ApplyError {
    ApplyError::Io { name: show(name), source: e.into() }
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Apply the tar stream `input` under `root` (an open directory), writing
/// tar-split records to `split`. Reads `input` to its very end.
pub fn apply<R: Read, W: Write>(
    input: &mut R,
    root: BorrowedFd<'_>,
    opts: ApplyOptions,
    split: &mut TarSplitWriter<W>,
) -> Result<ApplyStats, ApplyError> {
    let max = opts.expansion.max_bytes(opts.compressed_size);
    let mut input = Guarded::new(input, &root, max, opts.expansion);
    let mut tar = stream::TarStream::new(&mut input, split);
    let mut applier = applier::Applier::new(root, opts);
    let applied = (|| {
        while let Some(entry) = tar.next_entry()? {
            tar.with_body(&entry, |body| applier.entry(&entry, body))?;
        }
        tar.finish()
    })();
    match applied {
        Ok(()) => applier.finish(),
        Err(ApplyError::Read(e)) if e.get_ref().is_some_and(|i| i.is::<LimitError>()) => {
            let limit =
                e.into_inner().and_then(|i| i.downcast::<LimitError>().ok()).expect("checked just above");
            Err(ApplyError::Limit(*limit))
        }
        Err(e) => Err(e),
    }
}
