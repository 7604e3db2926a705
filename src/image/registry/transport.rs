//! What a transport is: a way to send an authorized GET. The registry
//! operations (manifest, blob stream, tag page) are the same requests on
//! every transport, so they are written once here, on top of
//! [`Transport::send`]; the open and the token transport differ only in
//! how a request gets past the registry's door.

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, RANGE};

use super::http::{Body, Failure, Fetched, Http};
use crate::image::manifest::{self, Descriptor, MAX_MANIFEST_BYTES};
use crate::image::reference::ImageRef;

/// Largest tag-list page accepted.
const MAX_TAG_PAGE_BYTES: usize = 16 << 20;

/// One attempt at a registry request; retries, digests and caps on sizes
/// the manifest promises are the client's.
pub(super) trait Transport: Send + Sync {
    /// The endpoint's HTTP layer.
    fn http(&self) -> &Http;

    /// GET `path` (below `/v2/`) of `repository` with `headers`, with
    /// whatever authorization this transport adds.
    fn send<'a>(
        &'a self,
        repository: &'a str,
        path: String,
        headers: HeaderMap,
    ) -> BoxFuture<'a, Result<reqwest::Response, Failure>>;

    /// The manifest `image` names (by digest if it has one), as served,
    /// with the registry's digest header.
    fn manifest<'a>(&'a self, image: &'a ImageRef, what: &'a str) -> BoxFuture<'a, Result<Fetched, Failure>> {
        Box::pin(async move {
            let reference = image.digest.clone().unwrap_or_else(|| image.tag_or_latest().to_string());
            let mut headers = HeaderMap::new();
            headers.insert(
                ACCEPT,
                HeaderValue::from_str(&manifest::ACCEPT.join(", ")).expect("media types are header-safe"),
            );
            let path = format!("{}/manifests/{reference}", image.repository);
            let res = self.send(&image.repository, path, headers).await?;
            self.http().read_ok(res, what, MAX_MANIFEST_BYTES).await
        })
    }

    /// A whole small blob, refused past `cap` bytes.
    fn blob<'a>(
        &'a self,
        image: &'a ImageRef,
        desc: &'a Descriptor,
        what: &'a str,
        cap: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, Failure>> {
        Box::pin(async move {
            let path = format!("{}/blobs/{}", image.repository, desc.digest);
            let res = self.send(&image.repository, path, HeaderMap::new()).await?;
            self.http().read_ok(res, what, cap).await.map(|(bytes, _)| bytes)
        })
    }

    /// A blob's body from byte `offset` on, and how many leading bytes of
    /// it to drop: a registry that ignores Range sends the whole blob again.
    fn blob_stream<'a>(
        &'a self,
        image: &'a ImageRef,
        desc: &'a Descriptor,
        what: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<(Body, u64), Failure>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            if offset > 0 {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("digits are header-safe"),
                );
            }
            let path = format!("{}/blobs/{}", image.repository, desc.digest);
            let res = self.send(&image.repository, path, headers).await?;
            let skip = match res.status().as_u16() {
                200 => offset,
                206 if offset > 0 => 0,
                _ => return Err(self.http().status_failure(what, res).await),
            };
            Ok((self.http().body(res), skip))
        })
    }

    /// One page of the tag list (the raw JSON), `n` tags after `last`.
    fn tags_page<'a>(
        &'a self,
        image: &'a ImageRef,
        n: usize,
        last: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<u8>, Failure>> {
        Box::pin(async move {
            let mut path = format!("{}/tags/list?n={n}", image.repository);
            if let Some(l) = last {
                path.push_str(&format!("&last={l}"));
            }
            let res = self.send(&image.repository, path, HeaderMap::new()).await?;
            self.http().read_ok(res, "tag list", MAX_TAG_PAGE_BYTES).await.map(|(bytes, _)| bytes)
        })
    }
}
