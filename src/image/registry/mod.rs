//! Talking to a registry, with what a command-line user needs: credentials
//! from auth files, plain http only for registries marked insecure,
//! retries with backoff on 429/5xx and dropped connections, size caps,
//! digest checks, and errors sorted into kinds with distinct exit codes.
//!
//! One `GET /v2/` decides the transport ([`transport::Transport`]): a
//! registry that answers it gets plain requests ([`open`]); one that
//! challenges gets the token or basic flow ([`token`]). Both run on one
//! reqwest stack ([`http`]), so every body is read through the same capped
//! reader and every status means the same on both. (oci-client's flows
//! buffered whole bodies, token responses and error pages included, before
//! any cap could apply, and re-probed `/v2/` before requests.)

mod http;
mod open;
mod token;
mod transport;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;

pub use self::http::NetError;
use self::http::{Failure, Http, Site};
use self::transport::Transport;
use crate::error::{Classify, Kind};
use crate::image::auth::{self, AuthError, Credentials};
use crate::image::manifest::{sha256_digest, Descriptor};
use crate::image::reference::ImageRef;
use crate::image::registries_conf::Endpoint;
use crate::image::source::{BlobSource, Chunks};

/// How many times a transient failure is tried in all.
const ATTEMPTS: u32 = 4;
/// First pause between attempts; it doubles each time.
const BACKOFF: Duration = Duration::from_millis(200);

/// A registry operation that failed; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 404 (the spec's MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN).
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
    #[error("cannot reach registry {registry}{}", if *.plain_http_hint { PLAIN_HTTP_HINT } else { "" })]
    Unreachable {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: NetError,
        /// Whether to suggest --tls-verify=false (it was https).
        plain_http_hint: bool,
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
        /// The parser's complaint, when one was involved.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Credentials that cannot be used.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// An environment variable that is not a number.
    #[error("{name}={} is not a number", crate::text::quoted(.value))]
    Setting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// The parser's complaint.
        #[source]
        source: std::num::ParseIntError,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot set up the http client")]
    Setup(#[source] reqwest::Error),
}

/// Said when an https connection failed: the usual cause with a local
/// registry is that it speaks plain http.
const PLAIN_HTTP_HINT: &str =
    " (if it serves plain http, pass --tls-verify=false or set insecure = true for it in registries.conf)";

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
            RegistryError::Credentials(_) | RegistryError::Setup(_) | RegistryError::Setting { .. } => {
                Kind::BadInput
            }
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
    transport: Box<dyn Transport>,
    /// The endpoint this client talks to.
    pub endpoint: Endpoint,
}

impl Client {
    /// Set up a client for `endpoint`: probe `GET /v2/` once, then use
    /// the token or basic flow if the registry asks for credentials, with
    /// credentials from `--creds` or the auth files.
    pub async fn connect(endpoint: Endpoint, opts: &Options) -> Result<Client, RegistryError> {
        let image = &endpoint.image;
        let tried = auth::auth_files(opts.authfile.as_deref());
        let creds: Option<Credentials> = match &opts.creds {
            Some(c) => Some(auth::parse_creds(c)?),
            None => auth::lookup(image, &tried, opts.authfile.as_deref())?,
        };
        let site = Site {
            registry: image.registry.clone(),
            insecure: endpoint.insecure,
            tried,
            auth_source: creds.as_ref().map(|c| c.source.clone()),
        };
        let http = Http::new(&endpoint, site)?;
        let challenge = retry("registry API", || async {
            let res = http.get(&http.url(""), HeaderMap::new()).await?;
            match res.status().as_u16() {
                200 => Ok(None),
                401 | 403 => Ok(Some(token::Challenge::of(res.headers()))),
                _ => Err(http.status_failure("registry API", res).await),
            }
        })
        .await?;
        tracing::debug!(
            "{} {}",
            image.registry,
            if challenge.is_some() { "requires auth" } else { "is open" }
        );
        let transport: Box<dyn Transport> = match challenge {
            None => Box::new(open::Open { http }),
            Some(c) => Box::new(token::Token::new(http, creds, c)),
        };
        Ok(Client { transport, endpoint })
    }

    fn site(&self) -> &Site {
        &self.transport.http().site
    }

    /// The manifest `image` names (by digest if it has one, else by tag),
    /// exactly as served, with its digest, checked against the registry's
    /// Docker-Content-Digest and against the digest asked for.
    pub async fn manifest(&self, image: &ImageRef) -> Result<(Vec<u8>, String), RegistryError> {
        let what = format!("manifest {image}");
        let (bytes, header) = retry(&what, || self.transport.manifest(image, &what)).await?;
        let digest = sha256_digest(&bytes);
        if let Some(h) = header.filter(|h| *h != digest) {
            return Err(self.site().bad(&what, format!("digest mismatch: served {digest}, header says {h}")));
        }
        if let Some(want) = image.digest.as_ref().filter(|d| **d != digest) {
            return Err(self.site().bad(&what, format!("digest mismatch: asked for {want}, got {digest}")));
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
            return Err(self.site().bad(&what, format!("{} bytes exceeds the {cap}-byte limit", desc.size)));
        }
        let bytes = retry(&what, || self.transport.blob(image, desc, &what, cap as usize)).await?;
        let got = sha256_digest(&bytes);
        if got != desc.digest {
            return Err(self.site().bad(&what, format!("digest mismatch: got {got}")));
        }
        if bytes.len() as u64 != desc.size {
            return Err(self
                .site()
                .bad(&what, format!("{} bytes, but the manifest says {}", bytes.len(), desc.size)));
        }
        Ok(bytes)
    }

    async fn blob_attempt(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        what: &str,
        offset: &mut u64,
        tx: &Chunks,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<(), Failure> {
        use futures_util::StreamExt;
        // Bytes of the response to drop before forwarding: a full response
        // to a resumed request repeats what was already sent.
        let (mut stream, mut skip) = self.transport.blob_stream(image, desc, what, *offset).await?;
        while let Some(chunk) = stream.next().await {
            let mut chunk = chunk.map_err(|e| self.site().net_failure(e))?;
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
                    error: self
                        .site()
                        .bad(what, format!("more than the {} bytes the manifest promises", desc.size)),
                });
            }
            on_bytes(chunk.len() as u64);
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
        // The body ended cleanly (a cut connection is an error of the
        // stream, above): this is what the registry has, and asking again
        // brings the same.
        if *offset < desc.size {
            return Err(Failure {
                transient: false,
                error: self.site().bad(
                    what,
                    format!("the blob ended after {offset} of the {} bytes the manifest promises", desc.size),
                ),
            });
        }
        Ok(())
    }

    /// Every tag of the repository, following pagination.
    pub async fn tags(&self, image: &ImageRef) -> Result<Vec<String>, RegistryError> {
        const PAGE: usize = 1000;
        #[derive(serde::Deserialize)]
        struct Page {
            tags: Option<Vec<String>>,
        }
        let mut out: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let bytes = retry("tag list", || self.transport.tags_page(image, PAGE, last.as_deref())).await?;
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| self.site().bad_with("tag list", "not a tag list".into(), e))?;
            let page = page.tags.unwrap_or_default();
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
}

impl BlobSource for Client {
    type Error = RegistryError;

    /// A connection that drops mid-blob is resumed where it stopped (HTTP
    /// Range; a registry that ignores Range has the bytes already sent
    /// skipped), so the reader sees one continuous stream.
    async fn blob_into(
        &self,
        image: &ImageRef,
        desc: &Descriptor,
        tx: &Chunks,
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
}

/// Run `op`, retrying transient failures with exponential backoff.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> Result<T, RegistryError>
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
