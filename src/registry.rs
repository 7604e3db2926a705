//! Talking to a registry: oci-client (rustls) underneath, with what a
//! command-line user needs on top: credentials from auth files, plain http
//! only for registries marked insecure, mirrors tried in order, retries
//! with backoff on 429/5xx and dropped connections, size caps, and errors
//! sorted into kinds that map to distinct exit codes.

use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::auth::{self, Credentials};
use crate::manifest::{Descriptor, ACCEPT, MAX_MANIFEST_BYTES};
use crate::reference::ImageRef;
use crate::registries::Endpoint;

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
/// certificates again, ~300 files on Debian), and oci-client builds two
/// TLS clients: that was two thirds of an inspect's run time. Call it
/// first thing in `main`, while the process has one thread.
pub fn prefer_system_ca_bundle() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    if let Some(bundle) = CA_BUNDLES.iter().find(|p| std::path::Path::new(p).is_file()) {
        // SAFETY (documented above): no other thread exists yet.
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

/// What kind of failure, for exit codes and for whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The image, tag, platform or blob does not exist.
    NotFound,
    /// Credentials missing or refused.
    Auth,
    /// The registry could not be reached or kept failing.
    Network,
    /// The user's input is wrong.
    BadInput,
    /// The registry sent something mtbx will not use.
    BadResponse,
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

impl RegistryError {
    /// The kind, for exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::NotFound { .. } => ErrorKind::NotFound,
            RegistryError::Unauthorized { .. } => ErrorKind::Auth,
            RegistryError::Unreachable { .. } => ErrorKind::Network,
            RegistryError::BadResponse { .. } => ErrorKind::BadResponse,
            RegistryError::BadInput(_) => ErrorKind::BadInput,
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

/// A client for one endpoint (registry host), with its credentials.
pub struct Client {
    inner: oci_client::Client,
    auth: RegistryAuth,
    auth_source: Option<String>,
    tried: Vec<PathBuf>,
    /// The endpoint this client talks to.
    pub endpoint: Endpoint,
}

impl Client {
    /// Set up a client for `endpoint`, with credentials from `--creds` or
    /// the auth files.
    pub fn new(endpoint: Endpoint, opts: &Options) -> Result<Client, RegistryError> {
        let image = &endpoint.image;
        let config = ClientConfig {
            protocol: if endpoint.insecure {
                ClientProtocol::HttpsExcept(vec![image.registry.clone()])
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
        let inner = oci_client::Client::try_from(config)
            .map_err(|e| RegistryError::BadInput(format!("cannot set up the registry client: {e}")))?;
        let tried = auth::auth_files(opts.authfile.as_deref());
        let creds: Option<Credentials> = match &opts.creds {
            Some(c) => Some(auth::parse_creds(c).map_err(|e| RegistryError::BadInput(e.to_string()))?),
            None => auth::lookup(image, &tried, opts.authfile.as_deref())
                .map_err(|e| RegistryError::BadInput(e.to_string()))?,
        };
        let (auth, auth_source) = match creds {
            Some(c) => {
                tracing::debug!("credentials for {} from {}", image.registry, c.source);
                (RegistryAuth::Basic(c.username, c.password), Some(c.source))
            }
            None => (RegistryAuth::Anonymous, None),
        };
        Ok(Client { inner, auth, auth_source, tried, endpoint })
    }

    /// The manifest `image` names (by digest if it has one, else by tag),
    /// exactly as served, with its digest. oci-client checks the bytes
    /// against the registry's Docker-Content-Digest and against the digest
    /// asked for.
    pub async fn manifest(&self, image: &ImageRef) -> Result<(Vec<u8>, String), RegistryError> {
        let what = format!("manifest {image}");
        let oci = image.to_oci();
        let (bytes, digest) =
            self.retry(&what, || self.inner.pull_manifest_raw(&oci, &self.auth, ACCEPT)).await?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(
                self.bad(&what, format!("{} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit", bytes.len()))
            );
        }
        Ok((bytes.to_vec(), digest))
    }

    /// A small blob (a config) in memory, refused if its descriptor says it
    /// is over `cap` bytes; oci-client checks the digest.
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
        let oci = image.to_oci();
        let layer = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: desc.size as i64,
            ..Default::default()
        };
        let bytes = self
            .retry(&what, || async {
                let mut buf: Vec<u8> = Vec::with_capacity(desc.size as usize);
                self.inner.pull_blob(&oci, &layer, &mut buf).await.map(|()| buf)
            })
            .await?;
        if bytes.len() as u64 != desc.size {
            return Err(
                self.bad(&what, format!("{} bytes, but the manifest says {}", bytes.len(), desc.size))
            );
        }
        Ok(bytes)
    }

    /// Every tag of the repository, following pagination.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        let oci = image.to_oci();
        let mut out: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self
                .retry("tag list", || self.inner.list_tags(&oci, &self.auth, Some(1000), last.as_deref()))
                .await?;
            let n = page.tags.len();
            let next = page.tags.last().cloned();
            out.extend(page.tags);
            if n < 1000 || next.is_none() || next == last {
                break;
            }
            last = next;
        }
        Ok(out)
    }

    fn bad(&self, what: &str, why: String) -> RegistryError {
        RegistryError::BadResponse { registry: self.endpoint.image.registry.clone(), what: what.into(), why }
    }

    /// Run `op`, retrying transient failures with exponential backoff.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut pause = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < ATTEMPTS && transient(&e) => {
                    tracing::info!("{what}: {} (attempt {attempt} of {ATTEMPTS}; retrying)", chain(&e));
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(self.classify(what, e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn classify(&self, what: &str, e: OciDistributionError) -> RegistryError {
        let registry = self.endpoint.image.registry.clone();
        let not_found = || RegistryError::NotFound { what: what.to_string(), registry: registry.clone() };
        let unauthorized = || RegistryError::Unauthorized {
            registry: registry.clone(),
            tried: self.tried.clone(),
            used: self.auth_source.clone(),
        };
        match &e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|x| &x.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown
                    )
                }) {
                    not_found()
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else {
                    self.bad(what, envelope.to_string())
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => not_found(),
            OciDistributionError::ServerError { code: 401 | 403, .. } => unauthorized(),
            OciDistributionError::ServerError { code, message, .. } if *code == 429 || *code >= 500 => {
                RegistryError::Unreachable {
                    registry,
                    why: format!("HTTP {code} after {ATTEMPTS} attempts: {}", message.trim()),
                }
            }
            OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
                let mut why = chain(&e);
                if !self.endpoint.insecure {
                    why.push_str(
                        "; if it serves plain http, pass --tls-verify=false or set insecure = true for it in registries.conf",
                    );
                }
                RegistryError::Unreachable { registry, why }
            }
            _ => self.bad(what, chain(&e)),
        }
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
