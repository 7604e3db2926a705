//! The HTTP layer under both transports: one reqwest client per endpoint,
//! one way to read a body (capped while streaming, never buffered whole
//! first), and one way to turn a status or a broken connection into a
//! [`RegistryError`] and a verdict on retrying. Keeping it in one place is
//! what makes the open and the token transport behave the same.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::HeaderMap;

use super::{RegistryError, ATTEMPTS};
use crate::image::registries_conf::Endpoint;

/// Why a registry could not be reached, or kept failing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The connection could not be made, or broke.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The body ended before the size the manifest promises.
    #[error("the connection ended after {got} of {want} bytes")]
    Ended {
        /// Bytes received.
        got: u64,
        /// Bytes promised.
        want: u64,
    },
    /// 429 or 5xx, still there after the retries.
    #[error("HTTP {code} after {ATTEMPTS} attempts{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// The status code.
        code: u16,
        /// The registry's own error text, when it gave one.
        detail: Option<String>,
    },
}

/// A failed attempt: the error, and whether trying again may help.
pub(super) struct Failure {
    pub transient: bool,
    pub error: RegistryError,
}

/// Who is being talked to, for the errors.
pub(super) struct Site {
    pub registry: String,
    pub insecure: bool,
    /// Auth files searched.
    pub tried: Vec<PathBuf>,
    /// Where the credentials came from, if there are any.
    pub auth_source: Option<String>,
}

impl Site {
    pub fn bad(&self, what: &str, why: String) -> RegistryError {
        RegistryError::BadResponse { registry: self.registry.clone(), what: what.into(), why, source: None }
    }

    pub fn bad_with(
        &self,
        what: &str,
        why: String,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> RegistryError {
        RegistryError::BadResponse {
            registry: self.registry.clone(),
            what: what.into(),
            why,
            source: Some(Box::new(source)),
        }
    }

    pub fn not_found(&self, what: &str) -> RegistryError {
        RegistryError::NotFound { what: what.to_string(), registry: self.registry.clone() }
    }

    pub fn unauthorized(&self) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            tried: self.tried.clone(),
            used: self.auth_source.clone(),
        }
    }

    /// A connection-level failure: always worth another attempt.
    pub fn net_failure(&self, source: NetError) -> Failure {
        Failure {
            transient: true,
            error: RegistryError::Unreachable {
                registry: self.registry.clone(),
                source,
                plain_http_hint: !self.insecure,
            },
        }
    }
}

/// System CA bundles, where distributions keep them (the openssl-probe list).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CA bundle, read once per process, unless the user chose
/// the roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`, which reqwest's default
/// verifier honours). Left to that verifier, rustls-native-certs reads the
/// bundle *and* every hashed file in /etc/ssl/certs (the same certificates
/// again, ~300 files on Debian) for every client built. Handing the bundle
/// to the builder does it without touching the process environment, which
/// other threads may be reading.
fn system_ca_bundle() -> Option<&'static [u8]> {
    static BUNDLE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
                return None;
            }
            CA_BUNDLES.iter().find_map(|p| std::fs::read(p).ok())
        })
        .as_deref()
}

/// The HTTP client of one endpoint.
pub(super) struct Http {
    client: reqwest::Client,
    /// `scheme://host/v2/`.
    base: String,
    pub site: Site,
}

/// A whole body, with the registry's Docker-Content-Digest header.
pub(super) type Fetched = (Vec<u8>, Option<String>);

/// The body of a response, chunk by chunk.
pub(super) type Body = BoxStream<'static, Result<Bytes, NetError>>;

impl Http {
    pub fn new(endpoint: &Endpoint, site: Site) -> Result<Http, RegistryError> {
        let scheme = if endpoint.insecure { "http" } else { "https" };
        let base = format!("{scheme}://{}/v2/", endpoint.image.registry);
        let builder = || {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(endpoint.insecure)
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .user_agent(concat!("mtbx/", env!("CARGO_PKG_VERSION")))
        };
        // No roots are needed where certificates are not checked.
        let with_bundle = system_ca_bundle().filter(|_| !endpoint.insecure).and_then(|pem| {
            let cert = reqwest::Certificate::from_pem(pem).ok()?;
            builder()
                .tls_certs_only([cert])
                .build()
                .inspect_err(|e| {
                    tracing::debug!("system CA bundle not usable ({e}); using the default roots")
                })
                .ok()
        });
        let client = match with_bundle {
            Some(c) => c,
            None => builder().build().map_err(RegistryError::Setup)?,
        };
        Ok(Http { client, base, site })
    }

    /// The URL of `path` below `/v2/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `url`; any status is an answer, only a failed exchange is an
    /// error.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<reqwest::Response, Failure> {
        self.client.get(url).headers(headers).send().await.map_err(|e| self.site.net_failure(e.into()))
    }

    /// The body of a response as a stream.
    pub fn body(&self, res: reqwest::Response) -> Body {
        res.bytes_stream().map(|r| r.map_err(NetError::from)).boxed()
    }

    /// A 200's body, refused once it passes `cap` bytes (while streaming);
    /// any other status is a failure with that status's meaning. Returns
    /// the registry's Docker-Content-Digest too.
    pub async fn read_ok(&self, res: reqwest::Response, what: &str, cap: usize) -> Result<Fetched, Failure> {
        if res.status().as_u16() != 200 {
            return Err(self.status_failure(what, res).await);
        }
        let header =
            res.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = self.body(res);
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.site.net_failure(e))?;
            if out.len() + chunk.len() > cap {
                return Err(Failure {
                    transient: false,
                    error: self.site.bad(what, format!("the body exceeds the {cap}-byte limit")),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok((out, header))
    }

    /// An HTTP status other than 200, by the same rules on both transports.
    pub async fn status_failure(&self, what: &str, res: reqwest::Response) -> Failure {
        let code = res.status().as_u16();
        let body = res.text().await.unwrap_or_default();
        let detail = Some(body.trim().to_string()).filter(|d| !d.is_empty());
        let error = match code {
            404 => self.site.not_found(what),
            401 | 403 => self.site.unauthorized(),
            429 | 500.. => {
                return self.site.net_failure(NetError::Status { code, detail });
            }
            _ => self.site.bad(what, format!("HTTP {code}: {}", detail.unwrap_or_default())),
        };
        Failure { transient: false, error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle that rustls refused would silently fall back to the slow
    /// default roots.
    #[test]
    fn the_system_bundle_makes_a_client() {
        let Some(pem) = system_ca_bundle() else { return };
        let cert = reqwest::Certificate::from_pem(pem).unwrap();
        reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
    }
}
