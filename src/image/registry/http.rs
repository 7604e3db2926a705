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
use crate::text::one_line;

/// Why a registry could not be reached, or kept failing.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The connection could not be made, or broke.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// Fewer than `limit` bytes a second for `secs` seconds.
    #[error("the transfer was slower than {limit} bytes/s for {secs} s (MTBX_LOW_SPEED_LIMIT, MTBX_LOW_SPEED_TIME)")]
    TooSlow {
        /// The limit, bytes per second.
        limit: u64,
        /// Over how long.
        secs: u64,
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

/// The certs.d directories read for `registry` (`host[:port]`), in
/// containers-image's order: the user's, then the system's, then
/// Docker's. (containers-image reads the user's only when rootless; a CA
/// root put in its own home is trusted here too.)
pub(crate) fn certs_d_dirs(registry: &str, home: Option<&std::path::Path>) -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    if let Some(h) = home {
        dirs.push(h.join(".config/containers/certs.d").join(registry));
    }
    dirs.push(std::path::Path::new("/etc/containers/certs.d").join(registry));
    dirs.push(std::path::Path::new("/etc/docker/certs.d").join(registry));
    dirs
}

/// The certificates in `registry`'s certs.d directories (`*.crt` files,
/// as podman and skopeo trust them), DER-encoded: how a registry with its
/// own CA, or a self-signed certificate, is trusted without turning
/// verification off.
fn certs_d_certs(registry: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut certs = Vec::new();
    for dir in certs_d_dirs(registry, home.as_deref()) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.extension().is_some_and(|x| x == "crt")) {
            let Ok(pem) = std::fs::read(&f) else { continue };
            let found: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten().collect();
            if found.is_empty() {
                tracing::warn!("ignoring {}: no PEM certificate in it", f.display());
            }
            certs.extend(found);
        }
    }
    certs
}

/// The system roots plus certs.d's, and one thing webpki alone refuses:
/// a server certificate that is itself one of certs.d's certificates
/// (a self-signed certificate made with `openssl req -x509`, which marks
/// it a CA) is accepted, as podman and skopeo accept it. Anything else is
/// verified as usual.
#[derive(Debug)]
struct CertsD {
    inner: std::sync::Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl rustls::client::danger::ServerCertVerifier for CertsD {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(_) if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS configuration for a registry with certs.d certificates: the
/// system bundle and those as roots, verified by [`CertsD`].
fn certs_d_tls(pinned: Vec<rustls::pki_types::CertificateDer<'static>>) -> Option<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let system = system_ca_bundle()
        .map(|pem| rustls::pki_types::CertificateDer::pem_slice_iter(pem).flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    roots.add_parsable_certificates(system.into_iter().chain(pinned.iter().cloned()));
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider.clone(),
    )
    .build()
    .inspect_err(|e| tracing::warn!("certs.d certificates not usable: {e}"))
    .ok()?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(CertsD { inner, pinned }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(config)
}

/// Error bodies are read this far, for the registry's message (the
/// spec's JSON is small; a longer body is not that JSON).
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// How much of a registry's error message a line shows.
const DETAIL_CHARS: usize = 200;

/// The low-speed limit (curl's CURLOPT_LOW_SPEED_LIMIT/TIME): a transfer
/// slower than `limit` bytes a second over `secs` seconds is a network failure,
/// retried (a blob is resumed). Without it a response that drips one byte
/// a second never ends, as every byte resets the read timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LowSpeed {
    /// Bytes per second; 0 turns the limit off.
    pub limit: u64,
    /// Seconds; 0 turns the limit off.
    pub secs: u64,
}

impl Default for LowSpeed {
    fn default() -> Self {
        LowSpeed { limit: 1024, secs: 30 }
    }
}

impl LowSpeed {
    /// The defaults, or `MTBX_LOW_SPEED_LIMIT` (bytes/s) and
    /// `MTBX_LOW_SPEED_TIME` (seconds).
    pub fn from_env() -> Result<LowSpeed, RegistryError> {
        let get = |name: &'static str, default: u64| match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(v) => v.trim().parse().map_err(|source| RegistryError::Setting { name, value: v, source }),
        };
        let d = LowSpeed::default();
        Ok(LowSpeed {
            limit: get("MTBX_LOW_SPEED_LIMIT", d.limit)?,
            secs: get("MTBX_LOW_SPEED_TIME", d.secs)?,
        })
    }

    fn window(self) -> Option<Duration> {
        (self.limit > 0 && self.secs > 0).then(|| Duration::from_secs(self.secs))
    }

    fn too_slow(self) -> NetError {
        NetError::TooSlow { limit: self.limit, secs: self.secs }
    }

    /// `inner`, failing with [`NetError::TooSlow`] when a window of
    /// `secs` seconds brings fewer than `limit * secs` bytes (also when
    /// nothing arrives at all).
    fn guard<S>(self, inner: S) -> Body
    where
        S: futures_util::Stream<Item = Result<Bytes, NetError>> + Send + 'static,
    {
        let Some(window) = self.window() else { return inner.boxed() };
        let need = self.limit.saturating_mul(self.secs);
        struct State<S> {
            inner: std::pin::Pin<Box<S>>,
            start: tokio::time::Instant,
            bytes: u64,
            failed: bool,
        }
        let state =
            State { inner: Box::pin(inner), start: tokio::time::Instant::now(), bytes: 0, failed: false };
        futures_util::stream::unfold(state, move |mut st| async move {
            if st.failed {
                return None;
            }
            loop {
                let deadline = st.start + window;
                let next = tokio::time::timeout_at(deadline, st.inner.next()).await;
                if let Ok(Some(Ok(chunk))) = &next {
                    st.bytes += chunk.len() as u64;
                }
                if tokio::time::Instant::now() >= deadline {
                    if st.bytes < need {
                        st.failed = true;
                        return Some((Err(self.too_slow()), st));
                    }
                    st.start = tokio::time::Instant::now();
                    st.bytes = 0;
                }
                match next {
                    Ok(item) => return item.map(|item| (item, st)),
                    Err(_) => continue, // the window rolled over above
                }
            }
        })
        .boxed()
    }
}

/// A body read up to a cap.
enum Capped {
    /// All of it.
    Whole(Vec<u8>),
    /// It went on past the cap.
    Over,
}

/// The HTTP client of one endpoint.
pub(super) struct Http {
    client: reqwest::Client,
    /// `scheme://host/v2/`.
    base: String,
    speed: LowSpeed,
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
        // No roots are needed where certificates are not checked. A
        // registry with certs.d certificates gets a verifier of its own.
        let pinned = if endpoint.insecure { Vec::new() } else { certs_d_certs(&endpoint.image.registry) };
        if !pinned.is_empty() {
            if let Some(tls) = certs_d_tls(pinned) {
                let client = builder().use_preconfigured_tls(tls).build().map_err(RegistryError::Setup)?;
                return Ok(Http { client, base, speed: LowSpeed::from_env()?, site });
            }
        }
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
        Ok(Http { client, base, speed: LowSpeed::from_env()?, site })
    }

    /// The URL of `path` below `/v2/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `url`; any status is an answer, only a failed exchange is an
    /// error. No answer within the low-speed time is a failed exchange.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<reqwest::Response, Failure> {
        let send = self.client.get(url).headers(headers).send();
        let sent = match self.speed.window() {
            Some(w) => tokio::time::timeout(w, send)
                .await
                .map_err(|_| self.site.net_failure(self.speed.too_slow()))?,
            None => send.await,
        };
        sent.map_err(|e| self.site.net_failure(e.into()))
    }

    /// The body of a response as a stream, held to the low-speed limit.
    pub fn body(&self, res: reqwest::Response) -> Body {
        self.speed.guard(res.bytes_stream().map(|r| r.map_err(NetError::from)))
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
        match self.read_capped(res, cap).await.map_err(|e| self.site.net_failure(e))? {
            Capped::Whole(body) => Ok((body, header)),
            Capped::Over => Err(Failure {
                transient: false,
                error: self.site.bad(what, format!("the body exceeds the {cap}-byte limit")),
            }),
        }
    }

    /// Every body is read through here: at most `cap` bytes are kept,
    /// and reading stops there (the rest goes with the connection).
    async fn read_capped(&self, res: reqwest::Response, cap: usize) -> Result<Capped, NetError> {
        let mut body = self.body(res);
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > cap {
                return Ok(Capped::Over);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Capped::Whole(out))
    }

    /// An HTTP status other than 200, by the same rules on both transports.
    /// The body is read only so far, for the registry's own message in
    /// the documented JSON form; anything else in it (an HTML page, escape
    /// sequences) is not shown.
    pub async fn status_failure(&self, what: &str, res: reqwest::Response) -> Failure {
        let code = res.status().as_u16();
        // A body too long, broken or slow has no message worth showing.
        let detail = match self.read_capped(res, MAX_ERROR_BODY_BYTES).await {
            Ok(Capped::Whole(body)) => registry_message(&body),
            _ => None,
        };
        let error = match code {
            404 => self.site.not_found(what),
            401 | 403 => self.site.unauthorized(),
            429 | 500.. => {
                return self.site.net_failure(NetError::Status { code, detail });
            }
            _ => self
                .site
                .bad(what, format!("HTTP {code}{}", detail.map(|d| format!(": {d}")).unwrap_or_default())),
        };
        Failure { transient: false, error }
    }
}

/// The registry's message in an error body of the distribution spec's
/// form, `{"errors":[{"code","message"}]}`, as one clean, short line.
fn registry_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let doc: Doc = serde_json::from_slice(body).ok()?;
    let text = doc
        .errors
        .iter()
        .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
            (false, false) => format!("{}: {}", e.code, e.message),
            (false, true) => e.code.clone(),
            _ => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(one_line(&text, DETAIL_CHARS)).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_is_read_per_registry_in_containers_image_order() {
        let dirs = certs_d_dirs("r.example:5000", Some(std::path::Path::new("/home/u")));
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "/home/u/.config/containers/certs.d/r.example:5000",
                "/etc/containers/certs.d/r.example:5000",
                "/etc/docker/certs.d/r.example:5000"
            ]
        );
    }

    #[test]
    fn only_the_registrys_json_message_is_shown() {
        let body =
            br#"{"errors":[{"code":"UNAVAILABLE","message":"down\n\u001b[2Jfor maintenance"},{"code":"X"}]}"#;
        assert_eq!(registry_message(body).as_deref(), Some("UNAVAILABLE: down [2Jfor maintenance; X"));
        assert_eq!(registry_message(b"<html>\n<h1>502</h1></html>"), None);
        assert_eq!(registry_message(br#"{"errors":[]}"#), None);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_dripping_body_fails_the_low_speed_limit() {
        let speed = LowSpeed { limit: 100, secs: 2 };
        // 10 bytes a second: under 100 bytes/s.
        let drip = futures_util::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            (n < 1000).then(|| (Ok(Bytes::from_static(b"0123456789")), n + 1))
        });
        let mut body = speed.guard(drip);
        let mut got = 0;
        let err = loop {
            match body.next().await {
                Some(Ok(c)) => got += c.len(),
                Some(Err(e)) => break e,
                None => panic!("the drip ended without an error"),
            }
        };
        assert!(matches!(err, NetError::TooSlow { limit: 100, secs: 2 }), "{err}");
        assert!(got <= 20, "{got}");
        assert!(body.next().await.is_none(), "nothing after the failure");
        // Silence fails too, and a fast stream passes.
        let silent = futures_util::stream::pending::<Result<Bytes, NetError>>();
        assert!(matches!(speed.guard(silent).next().await, Some(Err(NetError::TooSlow { .. }))));
        let fast = futures_util::stream::iter((0..10).map(|_| Ok(Bytes::from(vec![0u8; 1000]))));
        assert_eq!(speed.guard(fast).count().await, 10);
    }

    /// A bundle that rustls refused would silently fall back to the slow
    /// default roots.
    #[test]
    fn the_system_bundle_makes_a_client() {
        let Some(pem) = system_ca_bundle() else { return };
        let cert = reqwest::Certificate::from_pem(pem).unwrap();
        reqwest::Client::builder().tls_certs_only([cert]).build().unwrap();
    }
}
