//! Where a pull's layer blobs stream from: the registry client, skopeo's
//! proxy, or pull's choice between them. One trait so the layer pipeline
//! is written once against any of them.

use std::future::Future;

use crate::image::manifest::Descriptor;
use crate::image::reference::ImageRef;

/// The channel a blob's chunks go down, to the blocking reader that
/// decodes and extracts them (bounded: memory stays flat).
pub type Chunks = tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>;

/// A place blobs stream from.
pub trait BlobSource {
    /// Why a blob could not be streamed.
    type Error;

    /// Stream the blob `desc` of `image` into `tx`, chunk by chunk, in
    /// order, telling `on_bytes` of each chunk (for progress). The reader
    /// checks digests and sizes itself; the source stops quietly when the
    /// reader hangs up, as the reader's own error is the one to show.
    fn blob_into(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        tx: &Chunks,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
