//! The transport of a registry that answered `GET /v2/` without a
//! challenge: plain requests, with nothing to authorize and no probe
//! before each one (a probe per request doubled inspect's round trips).

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;

use super::http::{Failure, Http};
use super::transport::Transport;

/// Plain requests.
pub(super) struct Open {
    pub http: Http,
}

impl Transport for Open {
    fn http(&self) -> &Http {
        &self.http
    }

    fn send<'a>(
        &'a self,
        _repository: &'a str,
        path: String,
        headers: HeaderMap,
    ) -> BoxFuture<'a, Result<reqwest::Response, Failure>> {
        Box::pin(async move { self.http.get(&self.http.url(&path), headers).await })
    }
}
