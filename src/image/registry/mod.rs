//! Talking to a registry, with what a command-line user needs: credentials
//! from auth files, plain http only for registries marked insecure,
//! retries with backoff on 429/5xx and dropped connections, size caps,
//! digest checks, and errors sorted into kinds with distinct exit codes.
//!
//! One `GET /v2/` decides the transport. A registry that challenges goes
//! through oci-client (rustls), whose bearer-token and basic flows and
//! token cache do the auth. A registry that does not (a local registry,
//! registry.fedoraproject.org) gets plain requests on the same reqwest
//! stack: oci-client would re-probe `/v2/` before every request there,
//! which doubled inspect's round trips, and it buffers a whole body before
//! a size cap can be applied, where the open path refuses while streaming.

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::error::{Classify, Kind};
use crate::image::auth::{self, Credentials};
use crate::image::manifest::{sha256_digest, Descriptor, ACCEPT, MAX_MANIFEST_BYTES};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::Endpoint;

/// How many times a transient failure is tried in all.
const ATTEMPTS: u32 = 4;
/// First pause between attempts; it doubles each time.
const BACKOFF: Duration = Duration::from_millis(200);

/// System CA bundles, where distributions keep them (the openssl-probe list).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Point rustls at the system's CA bundle file unless the user chose
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR`). Left alone, rustls-native-certs
/// reads the bundle *and* every hashed file in /etc/ssl/certs (the same
/// certificates again, ~300 files on Debian), for every TLS client built
/// (oci-client builds two). Call it in a registry command before it starts
/// any thread: it changes the process environment.
pub fn prefer_system_ca_bundle() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    if let Some(bundle) = CA_BUNDLES.iter().find(|p| std::path::Path::new(p).is_file()) {
        // SAFETY (documented above): no other thread exists yet.
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

/// A registry operation that failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 404 or MANIFEST_UNKNOWN/NAME_UNKNOWN/BLOB_UNKNOWN.
    #[error("{what} not found in {registry}; check the name and tag (`mtbx inspect --tags` lists tags)")]
    NotFound {
        /// What was asked for.
        what: String,
        /// The registry.
        registry: String,
    },
    /// 401/403.
    #[error("{registry} requires authentication{}: log in with `podman login {registry}`, or pass --creds USER:PASSWORD or --authfile FILE", tried_text(.tried, .used))]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Auth files searched.
        tried: Vec<PathBuf>,
        /// Where the refused credentials came from, if any were sent.
        used: Option<String>,
    },
    /// Connection refused, DNS, TLS, timeouts, or 429/5xx after retries.
    #[error("cannot reach registry {registry}: {why}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The underlying cause.
        why: String,
    },
    /// Malformed, oversized or mismatching content.
    #[error("{registry} sent a bad response for {what}: {why}")]
    BadResponse {
        /// The registry.
        registry: String,
        /// What was fetched.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// Bad credentials or options.
    #[error("{0}")]
    BadInput(String),
}

fn tried_text(tried: &[PathBuf], used: &Option<String>) -> String {
    match used {
        Some(src) => format!(" (credentials from {src} were refused)"),
        None if tried.is_empty() => String::new(),
        None => format!(
            " (no credentials found in {})",
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl Classify for RegistryError {
    fn kind(&self) -> Kind {
        match self {
            RegistryError::NotFound { .. } => Kind::NotFound,
            RegistryError::Unauthorized { .. } => Kind::Auth,
            RegistryError::Unreachable { .. } => Kind::Network,
            RegistryError::BadResponse { .. } => Kind::Failed,
            RegistryError::BadInput(_) => Kind::BadInput,
        }
    }
}

/// Options shared by every registry command.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--tls-verify=false` allows plain http and unverified TLS everywhere.
    pub tls_verify: Option<bool>,
    /// `--creds`.
    pub creds: Option<String>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
}

/// A failed attempt: the error, and whether trying again may help.
struct Failure {
    transient: bool,
    error: RegistryError,
}

/// How requests reach the registry.
enum Transport {
    /// The registry wants credentials or tokens: oci-client's auth flows
    /// (bearer challenge, token cache, basic) handle every request.
    Oci { client: oci_client::Client, auth: RegistryAuth },
    /// The registry answered `GET /v2/` without a challenge: plain
    /// requests. oci-client would probe `/v2/` again before each request
    /// (it caches tokens, not "no auth needed"), doubling the round trips.
    Open { http: reqwest::Client, base: String },
}

/// A client for one endpoint (registry host), with its credentials.
pub struct Client {
    transport: Transport,
    auth_source: Option<String>,
    tried: Vec<PathBuf>,
    /// The endpoint this client talks to.
    pub endpoint: Endpoint,
}

impl Client {
    /// Set up a client for `endpoint`: probe `GET /v2/` once, then use
    /// oci-client's auth flows if the registry asks for credentials, with
    /// credentials from `--creds` or the auth files.
    pub async fn connect(endpoint: Endpoint, opts: &Options) -> Result<Client, RegistryError> {
        let image = &endpoint.image;
        let tried = auth::auth_files(opts.authfile.as_deref());
        let creds: Option<Credentials> = match &opts.creds {
            Some(c) => Some(auth::parse_creds(c).map_err(|e| RegistryError::BadInput(e.to_string()))?),
            None => auth::lookup(image, &tried, opts.authfile.as_deref())
                .map_err(|e| RegistryError::BadInput(e.to_string()))?,
        };
        let auth_source = creds.as_ref().map(|c| c.source.clone());
        let scheme = if endpoint.insecure { "http" } else { "https" };
        let base = format!("{scheme}://{}/v2/", image.registry);
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(endpoint.insecure)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("mtbx/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::BadInput(format!("cannot set up the http client: {}", chain(&e))))?;
        let mut client =
            Client { transport: Transport::Open { http, base: base.clone() }, auth_source, tried, endpoint };
        let challenged = client
            .retry("registry API", || async {
                let Transport::Open { http, .. } = &client.transport else { unreachable!() };
                let res = http.get(&base).send().await.map_err(|e| client.net_failure(&e))?;
                match res.status().as_u16() {
                    200 => Ok(false),
                    401 | 403 => Ok(true),
                    code => {
                        Err(client.status_failure("registry API", code, res.text().await.unwrap_or_default()))
                    }
                }
            })
            .await?;
        tracing::debug!(
            "{} {}",
            client.endpoint.image.registry,
            if challenged { "requires auth" } else { "is open" }
        );
        if challenged {
            client.transport = Transport::Oci {
                client: oci_client(&client.endpoint)?,
                auth: match creds {
                    Some(c) => RegistryAuth::Basic(c.username, c.password),
                    None => RegistryAuth::Anonymous,
                },
            };
        }
        Ok(client)
    }

    /// The manifest `image` names (by digest if it has one, else by tag),
    /// exactly as served, with its digest, checked against the registry's
    /// Docker-Content-Digest and against the digest asked for.
    pub async fn manifest(&self, image: &ImageRef) -> Result<(Vec<u8>, String), RegistryError> {
        let what = format!("manifest {image}");
        let reference = image.digest.clone().unwrap_or_else(|| image.tag_or_latest().to_string());
        let (bytes, digest) = match &self.transport {
            Transport::Oci { client, auth } => {
                let oci = image.to_oci();
                self.retry(&what, || async {
                    client.pull_manifest_raw(&oci, auth, ACCEPT).await.map_err(|e| self.oci_failure(&what, e))
                })
                .await
                .map(|(b, d)| (b.to_vec(), d))?
            }
            Transport::Open { .. } => {
                let path = format!("{}/manifests/{reference}", image.repository);
                let (bytes, header) =
                    self.retry(&what, || self.get(&what, &path, Some(ACCEPT), MAX_MANIFEST_BYTES)).await?;
                let digest = sha256_digest(&bytes);
                if let Some(h) = header.filter(|h| *h != digest) {
                    return Err(self.bad(&what, format!("digest mismatch: served {digest}, header says {h}")));
                }
                (bytes, digest)
            }
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(
                self.bad(&what, format!("{} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit", bytes.len()))
            );
        }
        if let Some(want) = image.digest.as_ref().filter(|d| **d != digest) {
            return Err(self.bad(&what, format!("digest mismatch: asked for {want}, got {digest}")));
        }
        Ok((bytes, digest))
    }

    /// A small blob (a config) in memory, refused if it is over `cap`
    /// bytes; its digest and size are checked.
    pub async fn small_blob(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        cap: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {}", desc.digest);
        if desc.size > cap {
            return Err(self.bad(&what, format!("{} bytes exceeds the {cap}-byte limit", desc.size)));
        }
        let bytes = match &self.transport {
            Transport::Oci { client, .. } => {
                let oci = image.to_oci();
                let layer = oci_descriptor(desc);
                self.retry(&what, || async {
                    let mut buf: Vec<u8> = Vec::with_capacity(desc.size as usize);
                    client
                        .pull_blob(&oci, &layer, &mut buf)
                        .await
                        .map(|()| buf)
                        .map_err(|e| self.oci_failure(&what, e))
                })
                .await?
            }
            Transport::Open { .. } => {
                let path = format!("{}/blobs/{}", image.repository, desc.digest);
                let (bytes, _) = self.retry(&what, || self.get(&what, &path, None, cap as usize)).await?;
                let got = sha256_digest(&bytes);
                if got != desc.digest {
                    return Err(self.bad(&what, format!("digest mismatch: got {got}")));
                }
                bytes
            }
        };
        if bytes.len() as u64 != desc.size {
            return Err(
                self.bad(&what, format!("{} bytes, but the manifest says {}", bytes.len(), desc.size))
            );
        }
        Ok(bytes)
    }

    /// Stream a blob into `tx`, chunk by chunk, in order. A connection that
    /// drops mid-blob is resumed where it stopped (HTTP Range; a registry
    /// that ignores Range has the bytes already sent skipped), so the reader
    /// sees one continuous stream; it checks the digest itself. Stops
    /// quietly when the reader hangs up (its own error is the one to show).
    /// `on_bytes` is told of every chunk, for progress.
    pub async fn blob_into(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), RegistryError> {
        let what = format!("blob {}", desc.digest);
        let mut offset = 0u64;
        let mut failures = 0u32;
        let mut pause = BACKOFF;
        loop {
            let before = offset;
            match self.blob_attempt(image, desc, &what, &mut offset, tx, on_bytes).await {
                Ok(()) => return Ok(()),
                Err(f) if f.transient => {
                    if offset > before {
                        // Progress was made: this is a new run of failures.
                        failures = 0;
                        pause = BACKOFF;
                    }
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(f.error);
                    }
                    tracing::info!("{what}: {} (at byte {offset}; resuming)", f.error);
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn blob_attempt(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        what: &str,
        offset: &mut u64,
        tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Failure> {
        use futures_util::StreamExt;
        // Bytes of the response to drop before forwarding: a full response
        // to a resumed request repeats what was already sent.
        let (mut stream, mut skip): (
            futures_util::stream::BoxStream<'_, std::io::Result<bytes::Bytes>>,
            u64,
        ) = match &self.transport {
            Transport::Open { http, base } => {
                let mut req = http.get(format!("{base}{}/blobs/{}", image.repository, desc.digest));
                if *offset > 0 {
                    req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
                }
                let res = req.send().await.map_err(|e| self.net_failure(&e))?;
                let code = res.status().as_u16();
                let skip = match code {
                    200 => *offset,
                    206 if *offset > 0 => 0,
                    _ => {
                        let body = res.text().await.unwrap_or_default();
                        return Err(self.status_failure(what, code, body));
                    }
                };
                (res.bytes_stream().map(|r| r.map_err(std::io::Error::other)).boxed(), skip)
            }
            Transport::Oci { client, .. } => {
                let oci = image.to_oci();
                let layer = oci_descriptor(desc);
                if *offset == 0 {
                    let s =
                        client.pull_blob_stream(&oci, &layer).await.map_err(|e| self.oci_failure(what, e))?;
                    (s.stream, 0)
                } else {
                    let r = client
                        .pull_blob_stream_partial(
                            &oci,
                            &layer,
                            *offset,
                            Some(desc.size.saturating_sub(*offset)),
                        )
                        .await
                        .map_err(|e| self.oci_failure(what, e))?;
                    match r {
                        oci_client::client::BlobResponse::Full(s) => (s.stream, *offset),
                        oci_client::client::BlobResponse::Partial(s) => (s.stream, 0),
                    }
                }
            }
        };
        while let Some(chunk) = stream.next().await {
            let mut chunk = chunk.map_err(|e| self.net_failure(&e))?;
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = chunk.slice(n as usize..);
                if chunk.is_empty() {
                    continue;
                }
            }
            *offset += chunk.len() as u64;
            if *offset > desc.size {
                return Err(Failure {
                    transient: false,
                    error: self.bad(what, format!("more than the {} bytes the manifest promises", desc.size)),
                });
            }
            on_bytes(chunk.len() as u64);
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
        if *offset < desc.size {
            return Err(self.net_failure(&std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the connection ended after {offset} of {} bytes", desc.size),
            )));
        }
        Ok(())
    }

    /// Every tag of the repository, following pagination.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        const PAGE: usize = 1000;
        let mut out: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page: Vec<String> = match &self.transport {
                Transport::Oci { client, auth } => {
                    let oci = image.to_oci();
                    self.retry("tag list", || async {
                        client
                            .list_tags(&oci, auth, Some(PAGE), last.as_deref())
                            .await
                            .map(|t| t.tags)
                            .map_err(|e| self.oci_failure("tag list", e))
                    })
                    .await?
                }
                Transport::Open { .. } => {
                    let mut path = format!("{}/tags/list?n={PAGE}", image.repository);
                    if let Some(l) = &last {
                        path.push_str(&format!("&last={l}"));
                    }
                    let (bytes, _) =
                        self.retry("tag list", || self.get("tag list", &path, None, 16 << 20)).await?;
                    let doc: serde_json::Value =
                        serde_json::from_slice(&bytes).map_err(|e| self.bad("tag list", e.to_string()))?;
                    doc["tags"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                        .unwrap_or_default()
                }
            };
            let n = page.len();
            let next = page.last().cloned();
            out.extend(page);
            if n < PAGE || next.is_none() || next == last {
                break;
            }
            last = next;
        }
        Ok(out)
    }

    /// GET `base + path` on an open registry, reading at most `cap` bytes
    /// of body (refused beyond that while streaming, never buffered whole).
    async fn get(
        &self,
        what: &str,
        path: &str,
        accept: Option<&[&str]>,
        cap: usize,
    ) -> Result<(Vec<u8>, Option<String>), Failure> {
        let Transport::Open { http, base } = &self.transport else { unreachable!("open registries only") };
        let mut req = http.get(format!("{base}{path}"));
        if let Some(types) = accept {
            req = req.header(reqwest::header::ACCEPT, types.join(", "));
        }
        let mut res = req.send().await.map_err(|e| self.net_failure(&e))?;
        let code = res.status().as_u16();
        if code != 200 {
            let body = res.text().await.unwrap_or_default();
            return Err(self.status_failure(what, code, body));
        }
        let header =
            res.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.net_failure(&e))? {
            if body.len() + chunk.len() > cap {
                return Err(Failure {
                    transient: false,
                    error: self.bad(what, format!("the body exceeds the {cap}-byte limit")),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, header))
    }

    fn bad(&self, what: &str, why: String) -> RegistryError {
        RegistryError::BadResponse { registry: self.endpoint.image.registry.clone(), what: what.into(), why }
    }

    fn not_found(&self, what: &str) -> RegistryError {
        RegistryError::NotFound { what: what.to_string(), registry: self.endpoint.image.registry.clone() }
    }

    fn unauthorized(&self) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.endpoint.image.registry.clone(),
            tried: self.tried.clone(),
            used: self.auth_source.clone(),
        }
    }

    /// An HTTP status other than 200, by the same rules on both transports.
    fn status_failure(&self, what: &str, code: u16, body: String) -> Failure {
        let error = match code {
            404 => self.not_found(what),
            401 | 403 => self.unauthorized(),
            429 | 500.. => RegistryError::Unreachable {
                registry: self.endpoint.image.registry.clone(),
                why: format!("HTTP {code} after {ATTEMPTS} attempts: {}", body.trim()),
            },
            _ => self.bad(what, format!("HTTP {code}: {}", body.trim())),
        };
        Failure { transient: code == 429 || code >= 500, error }
    }

    /// A connection-level failure: always worth another attempt.
    fn net_failure(&self, e: &(dyn std::error::Error + 'static)) -> Failure {
        let mut why = chain(e);
        if !self.endpoint.insecure {
            why.push_str("; if it serves plain http, pass --tls-verify=false or set insecure = true for it in registries.conf");
        }
        Failure {
            transient: true,
            error: RegistryError::Unreachable { registry: self.endpoint.image.registry.clone(), why },
        }
    }

    /// Run `op`, retrying transient failures with exponential backoff.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut pause = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Ok(v) => return Ok(v),
                Err(f) if attempt < ATTEMPTS && f.transient => {
                    tracing::info!("{what}: {} (attempt {attempt} of {ATTEMPTS}; retrying)", f.error);
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(f) => return Err(f.error),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// oci-client's errors, sorted by the same rules as the open path's.
    fn oci_failure(&self, what: &str, e: OciDistributionError) -> Failure {
        let transient = transient(&e);
        let error = match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(),
            OciDistributionError::ImageManifestNotFoundError(_) => self.not_found(what),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|x| &x.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown
                    )
                }) {
                    self.not_found(what)
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.unauthorized()
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Toomanyrequests)) {
                    return self.status_failure(what, 429, envelope.to_string());
                } else {
                    self.bad(what, envelope.to_string())
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                return self.status_failure(what, *code, message.clone());
            }
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                return self.net_failure(&e);
            }
            _ => self.bad(what, chain(&e)),
        };
        Failure { transient, error }
    }
}

/// oci-client for a registry that wants credentials: http only where the
/// endpoint is insecure.
fn oci_client(endpoint: &Endpoint) -> Result<oci_client::Client, RegistryError> {
    let config = ClientConfig {
        protocol: if endpoint.insecure {
            ClientProtocol::HttpsExcept(vec![endpoint.image.registry.clone()])
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: endpoint.insecure,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("mtbx/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config)
        .map_err(|e| RegistryError::BadInput(format!("cannot set up the registry client: {e}")))
}

/// oci-client's form of a descriptor.
fn oci_descriptor(desc: &Descriptor) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: desc.digest.clone(),
        size: desc.size as i64,
        ..Default::default()
    }
}

/// Whether a failure may go away if tried again.
fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|x| matches!(x.code, OciErrorCode::Toomanyrequests))
        }
        OciDistributionError::RequestError(r) => !r.is_builder() && !r.is_redirect(),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// An error with its causes, one line: reqwest's own message hides them
/// ("error sending request"), the cause says "Connection refused".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    parts.join(": ")
}
