//! The transport of a registry that challenged `GET /v2/`: the
//! distribution token flow (a `Bearer` challenge names a realm that hands
//! out tokens, with the user's credentials as basic auth if there are any)
//! or plain basic auth. It runs on the same HTTP layer as the open
//! transport, so token responses and error bodies are read with the same
//! caps, and a token is fetched once per repository, not per request.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};

use super::http::{Failure, Http};
use super::transport::Transport;
use crate::image::auth::Credentials;

/// Largest token response accepted (real ones are a few kilobytes).
const MAX_TOKEN_BYTES: usize = 1 << 20;

/// What a `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// Fetch a token from `realm`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// `service` to pass on.
        service: Option<String>,
        /// The scope the registry says it needs, if it says.
        scope: Option<String>,
    },
    /// Send the credentials with every request.
    Basic,
}

impl Challenge {
    /// The challenge of a 401 response, if it has one mtbx can answer.
    pub fn of(headers: &HeaderMap) -> Option<Challenge> {
        headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()).find_map(Challenge::parse)
    }

    fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
    }
}

/// `key="value", key=value` pairs; quoted values may hold commas.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

/// Requests authorized by a token or by basic auth.
pub(super) struct Token {
    http: Http,
    creds: Option<Credentials>,
    /// The latest challenge seen (first the probe's).
    challenge: Mutex<Option<Challenge>>,
    /// The Authorization header that worked, per scope.
    authorized: Mutex<HashMap<String, HeaderValue>>,
}

impl Token {
    pub fn new(http: Http, creds: Option<Credentials>, challenge: Option<Challenge>) -> Token {
        Token { http, creds, challenge: Mutex::new(challenge), authorized: Mutex::new(HashMap::new()) }
    }

    fn basic(&self) -> Option<HeaderValue> {
        let c = self.creds.as_ref()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
        let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The Authorization header that answers `challenge` for `scope`
    /// (None: nothing to send, the request goes anonymously).
    async fn answer(&self, challenge: &Challenge, scope: &str) -> Result<Option<HeaderValue>, Failure> {
        let (realm, service, wanted) = match challenge {
            Challenge::Basic => return Ok(self.basic()),
            Challenge::Bearer { realm, service, scope } => (realm, service, scope),
        };
        let mut url = reqwest::Url::parse(realm).map_err(|e| Failure {
            transient: false,
            error: self.http.site.bad_with("token realm", format!("{realm:?} is not a URL"), e),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", wanted.as_deref().unwrap_or(scope));
        }
        let mut headers = HeaderMap::new();
        headers.extend(self.basic().map(|v| (AUTHORIZATION, v)));
        let res = self.http.get(url.as_str(), headers).await?;
        match res.status().as_u16() {
            200 => {}
            401 | 403 => return Err(Failure { transient: false, error: self.http.site.unauthorized() }),
            _ => return Err(self.http.status_failure("token", res).await),
        }
        let (body, _) = self.http.read_ok(res, "token", MAX_TOKEN_BYTES).await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let bad = |why: &str, e: Option<serde_json::Error>| Failure {
            transient: false,
            error: match e {
                Some(e) => self.http.site.bad_with("token", why.into(), e),
                None => self.http.site.bad("token", why.into()),
            },
        };
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| bad("not a token document", Some(e)))?;
        let token = answer.token.or(answer.access_token).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| bad("no token in the answer", None))?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| bad("the token has characters a header cannot carry", None))?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    async fn get(
        &self,
        url: &str,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, Failure> {
        let mut headers = headers.clone();
        headers.extend(auth.map(|v| (AUTHORIZATION, v.clone())));
        self.http.get(url, headers).await
    }
}

impl Transport for Token {
    fn http(&self) -> &Http {
        &self.http
    }

    fn send<'a>(
        &'a self,
        repository: &'a str,
        path: String,
        headers: HeaderMap,
    ) -> BoxFuture<'a, Result<reqwest::Response, Failure>> {
        Box::pin(async move {
            let scope = format!("repository:{repository}:pull");
            let url = self.http.url(&path);
            let cached = self.authorized.lock().expect("not poisoned").get(&scope).cloned();
            // Answer the known challenge before the first request rather
            // than after its 401: one round trip less.
            let auth = match cached {
                Some(v) => Some(v),
                None => {
                    let known = self.challenge.lock().expect("not poisoned").clone();
                    match known {
                        Some(c) => self.answer(&c, &scope).await?,
                        None => None,
                    }
                }
            };
            let res = self.get(&url, &headers, auth.as_ref()).await?;
            if res.status().as_u16() != 401 {
                if let Some(v) = auth {
                    self.authorized.lock().expect("not poisoned").insert(scope, v);
                }
                return Ok(res);
            }
            // A token expired, or the registry wants another scope: answer
            // the new challenge once; the same answer again is a refusal.
            let Some(challenge) = Challenge::of(res.headers()) else { return Ok(res) };
            *self.challenge.lock().expect("not poisoned") = Some(challenge.clone());
            let fresh = self.answer(&challenge, &scope).await?;
            if fresh.is_none() || fresh == auth {
                return Ok(res);
            }
            let res = self.get(&url, &headers, fresh.as_ref()).await?;
            if res.status().as_u16() != 401 {
                if let Some(v) = fresh {
                    self.authorized.lock().expect("not poisoned").insert(scope, v);
                }
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"bearer realm="http://127.0.0.1:5/token""#),
            Some(Challenge::Bearer { realm: "http://127.0.0.1:5/token".into(), service: None, scope: None })
        );
        assert_eq!(Challenge::parse(r#"Basic realm="fixture""#), Some(Challenge::Basic));
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None, "no realm, no token");
    }
}
