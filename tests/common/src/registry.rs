//! An in-process registry on 127.0.0.1 that serves the OCI layouts in
//! fixtures/oci/ over the distribution API, with token or basic auth and
//! faults a real server cannot be told to make (503s, 429s, dropped
//! connections, corrupt or oversized manifests, hostile error bodies,
//! endless and dripping bodies, short blobs, configs of the wrong type). It behaves like the
//! distribution registry where that matters: 404 MANIFEST_UNKNOWN when the
//! Accept header lacks the manifest's media type.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;

/// How clients must authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Anyone.
    None,
    /// Bearer tokens from /token; with Some, the token endpoint wants
    /// these basic credentials.
    Token(Option<(String, String)>),
    /// Basic auth on every request.
    Basic(String, String),
}

/// Faults to inject, counted down per request.
#[derive(Default)]
pub struct Faults {
    /// Answer this many requests with 503.
    pub fail: AtomicUsize,
    /// Answer this many requests with 429.
    pub rate_limit: AtomicUsize,
    /// Close this many connections without an answer.
    pub drop: AtomicUsize,
    /// Serve manifests with one byte changed (digest header unchanged).
    pub corrupt_manifests: AtomicBool,
    /// Blob responses that promise the whole blob but stop halfway and
    /// close the connection.
    pub cut_blobs: AtomicUsize,
    /// When set, only these blobs are cut or corrupted.
    pub cut_only: Mutex<Vec<String>>,
    /// Flip a byte in every blob served.
    pub corrupt_blobs: AtomicBool,
    /// Serve a 5 MiB manifest for every tag.
    pub huge_manifests: AtomicBool,
    /// Serve image manifests whose config descriptor has this media type
    /// (digest header to match: for manifests fetched by tag).
    pub config_media_type: Mutex<Option<String>>,
    /// Answer every request with this status and body.
    pub error_body: Mutex<Option<(u16, Vec<u8>)>>,
    /// Answer every request with a 500 whose body never ends.
    pub endless_errors: AtomicBool,
    /// Answer /token with a 200 whose body never ends.
    pub endless_token: AtomicBool,
    /// Send this many manifest or blob bodies (blobs: those of `cut_only`
    /// when set) at 5 bytes a second.
    pub drip: AtomicUsize,
    /// Serve blobs (those of `cut_only` when set) 10 bytes short, with a
    /// Content-Length that says so.
    pub short_blobs: AtomicBool,
}

pub struct FixtureRegistry {
    /// host:port
    pub addr: String,
    pub faults: Arc<Faults>,
    /// Every request line served, for assertions.
    pub log: Arc<Mutex<Vec<String>>>,
}

const TOKEN: &str = "fixture-token-3f1c";

impl FixtureRegistry {
    /// Serve `root` (a directory of OCI layouts, one per repository name).
    pub fn start(root: &Path, auth: Auth) -> FixtureRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let faults = Arc::new(Faults::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let ctx = Arc::new(Ctx {
            root: root.to_path_buf(),
            auth,
            addr: addr.clone(),
            faults: faults.clone(),
            log: log.clone(),
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &ctx);
                });
            }
        });
        FixtureRegistry { addr, faults, log }
    }

    /// The registry serving the project's committed fixtures.
    pub fn fixtures(auth: Auth) -> FixtureRegistry {
        FixtureRegistry::start(&fixtures_root(), auth)
    }
}

pub fn fixtures_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("fixtures/oci")
}

struct Ctx {
    root: PathBuf,
    auth: Auth,
    addr: String,
    faults: Arc<Faults>,
    log: Arc<Mutex<Vec<String>>>,
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
}

fn serve(mut conn: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        if let Some(len) = headers.get("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
        }
        let range = headers.get("range").map(|r| format!(" range={r}")).unwrap_or_default();
        ctx.log.lock().unwrap().push(format!("{method} {path}{range}"));
        if take(&ctx.faults.drop) {
            return Ok(()); // close without a word
        }
        let req = Request { method, path, headers };
        let endless = if req.path.starts_with("/token") {
            ctx.faults.endless_token.load(Ordering::SeqCst).then_some("200 OK")
        } else {
            ctx.faults.endless_errors.load(Ordering::SeqCst).then_some("500 Internal Server Error")
        };
        if let Some(status) = endless {
            conn.write_all(format!("HTTP/1.1 {status}\r\nConnection: close\r\n\r\n").as_bytes())?;
            let chunk = vec![b'x'; 64 << 10];
            loop {
                conn.write_all(&chunk)?; // until the client hangs up
            }
        }
        let canned = ctx.faults.error_body.lock().unwrap().clone();
        let (status, mut headers, mut body) = match canned {
            Some((status, body)) => (status, Vec::new(), body),
            None => route(&req, ctx),
        };
        let is_blob = status == 200 && req.path.contains("/blobs/");
        let chosen = {
            let only = ctx.faults.cut_only.lock().unwrap();
            only.is_empty() || only.iter().any(|d| req.path.contains(d.as_str()))
        };
        if is_blob && chosen && ctx.faults.corrupt_blobs.load(Ordering::SeqCst) && !body.is_empty() {
            let mid = body.len() / 2;
            body[mid] ^= 0x55;
        }
        // Range requests on blobs, as the distribution registry serves them.
        let mut status = status;
        if let Some(start) = req
            .headers
            .get("range")
            .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse::<usize>().ok())
        {
            if is_blob && start < body.len() {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
                ));
                body = body.split_off(start);
                status = 206;
            }
        }
        if is_blob && chosen && ctx.faults.short_blobs.load(Ordering::SeqCst) {
            body.truncate(body.len().saturating_sub(10));
        }
        if is_blob && chosen && take(&ctx.faults.cut_blobs) {
            let out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.write_all(out.as_bytes())?;
            conn.write_all(&body[..body.len() / 2])?;
            return Ok(());
        }
        let reason = match status {
            200 => "OK",
            206 => "Partial Content",
            401 => "Unauthorized",
            404 => "Not Found",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut out = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        conn.write_all(out.as_bytes())?;
        let only_some = !ctx.faults.cut_only.lock().unwrap().is_empty();
        let drips = status == 200
            && ((req.path.contains("/manifests/") && !only_some) || (is_blob && chosen))
            && take(&ctx.faults.drip);
        if drips {
            for b in &body {
                conn.write_all(&[*b])?; // until the client gives up
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            return Ok(());
        }
        if req.method != "HEAD" {
            conn.write_all(&body)?;
        }
        conn.flush()?;
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>);

fn json_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    (status, vec![("Content-Type".into(), "application/json".into())], body.to_string().into_bytes())
}

fn basic_ok(req: &Request, user: &str, pass: &str) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    req.headers.get("authorization").is_some_and(|a| a == &format!("Basic {want}"))
}

fn route(req: &Request, ctx: &Ctx) -> Response {
    if take(&ctx.faults.fail) {
        return json_error(503, "UNAVAILABLE", "injected failure");
    }
    if take(&ctx.faults.rate_limit) {
        return json_error(429, "TOOMANYREQUESTS", "injected rate limit");
    }
    let path = req.path.split('?').next().unwrap_or("");
    if path == "/token" {
        return match &ctx.auth {
            Auth::Token(Some((u, p))) if !basic_ok(req, u, p) => {
                json_error(401, "UNAUTHORIZED", "bad credentials")
            }
            _ => (
                200,
                vec![("Content-Type".into(), "application/json".into())],
                serde_json::json!({"token": TOKEN, "access_token": TOKEN, "expires_in": 300})
                    .to_string()
                    .into_bytes(),
            ),
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return json_error(404, "NOT_FOUND", "no such path") };
    match &ctx.auth {
        Auth::None => {}
        Auth::Token(_) => {
            if req.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    "Bearer realm=\"http://{}/token\",service=\"fixture-registry\",scope=\"repository:x:pull\"",
                    ctx.addr
                );
                let (s, mut h, b) = json_error(401, "UNAUTHORIZED", "authentication required");
                h.push(("WWW-Authenticate".into(), challenge));
                return (s, h, b);
            }
        }
        Auth::Basic(u, p) => {
            if !basic_ok(req, u, p) {
                let (s, mut h, b) = json_error(401, "UNAUTHORIZED", "authentication required");
                h.push(("WWW-Authenticate".into(), "Basic realm=\"fixture\"".into()));
                return (s, h, b);
            }
        }
    }
    if rest.is_empty() {
        return (200, vec![("Content-Type".into(), "application/json".into())], b"{}".to_vec());
    }
    for (sep, kind) in [("/manifests/", "m"), ("/blobs/", "b"), ("/tags/list", "t")] {
        let Some(i) = rest.find(sep) else { continue };
        let (name, reference) = (&rest[..i], &rest[i + sep.len()..]);
        let dir = ctx.root.join(name);
        if !dir.join("index.json").exists() {
            return json_error(404, "NAME_UNKNOWN", "repository name not known to registry");
        }
        return match kind {
            "m" => manifest(req, ctx, &dir, reference),
            "b" => match read_blob(&dir, reference) {
                Some(b) => (200, vec![("Docker-Content-Digest".into(), reference.into())], b),
                None => json_error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
            },
            _ => {
                let tags: Vec<String> = tags(&dir).into_iter().map(|(t, _)| t).collect();
                let body = serde_json::json!({"name": name, "tags": tags});
                (200, vec![("Content-Type".into(), "application/json".into())], body.to_string().into_bytes())
            }
        };
    }
    json_error(404, "NOT_FOUND", "no such path")
}

fn read_blob(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    std::fs::read(dir.join("blobs/sha256").join(hex)).ok()
}

/// (tag, digest) pairs of a layout's index.json.
pub fn tags(dir: &Path) -> Vec<(String, String)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn manifest(req: &Request, ctx: &Ctx, dir: &Path, reference: &str) -> Response {
    let digest = if reference.starts_with("sha256:") {
        reference.to_string()
    } else {
        match tags(dir).into_iter().find(|(t, _)| t == reference) {
            Some((_, d)) => d,
            None => return json_error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        }
    };
    let Some(mut body) = read_blob(dir, &digest) else {
        return json_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    };
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let media_type = doc["mediaType"].as_str().unwrap_or("").to_string();
    let accept = req.headers.get("accept").cloned().unwrap_or_default();
    if !accept.split(',').any(|a| a.trim().split(';').next() == Some(media_type.as_str())) {
        return json_error(
            404,
            "MANIFEST_UNKNOWN",
            "manifest found, but accept header does not support its type",
        );
    }
    let mut digest_header = digest.clone();
    if ctx.faults.huge_manifests.load(Ordering::SeqCst) {
        body.extend(std::iter::repeat_n(b' ', 5 << 20));
        digest_header = super::fixtures::sha256(&body);
    }
    let config_type = ctx.faults.config_media_type.lock().unwrap().clone();
    if let Some(t) = config_type.filter(|_| doc.get("config").is_some()) {
        let mut doc = doc.clone();
        doc["config"]["mediaType"] = t.into();
        body = serde_json::to_vec(&doc).unwrap();
        digest_header = super::fixtures::sha256(&body);
    }
    if ctx.faults.corrupt_manifests.load(Ordering::SeqCst) {
        body.push(b' ');
    }
    (200, vec![("Content-Type".into(), media_type), ("Docker-Content-Digest".into(), digest_header)], body)
}

/// `cmd`'s output, or a panic if it runs longer than `limit` (then it is
/// killed): a client that never gives up on a hostile server hangs.
pub fn output_within(cmd: &mut std::process::Command, limit: std::time::Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("still running after {limit:?}: killed");
        }
    }
}
