//! A small token server for distribution's `auth: token` (the Docker registry token flow).
//!
//! `GET /token?service=S&scope=repository:NAME:pull,push[&scope=…]` with optional Basic
//! credentials answers `{"token"|"access_token": JWT, "expires_in": N, "issued_at": RFC3339}`.
//!
//! What distribution v3.1.2 (`registry/auth/token`) verifies, and how this server meets it:
//! - the JWT's first signature header must carry an `x5c` chain whose leaf verifies against the
//!   registry's `rootcertbundle` (any key usage), or a `kid`/`jwk` naming a trusted key. We send
//!   `x5c: [leaf]`, the leaf being an ECDSA P-256 certificate signed by a [`TestCa`] whose
//!   certificate is the registry's `rootcertbundle`;
//! - the algorithm must be one of the configured `signingalgorithms` (default: all of EdDSA, HS*,
//!   RS*, ES*, PS*). We sign with ES256;
//! - `iss` must equal the configured `issuer`; `aud` (string or list) must contain the configured
//!   `service`;
//! - `exp` + 60 s leeway must be in the future and `nbf` − 60 s in the past (so a token stays
//!   usable at the registry for a minute past `exp`);
//! - `access: [{type, name, actions}]` must cover every action the request needs (`pull` for
//!   GET/HEAD, `push` for uploads and manifest PUT, `delete` for DELETE, `registry:catalog:*`
//!   for `/v2/_catalog`; `*` grants everything).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::certs::{LeafCert, TestCa};

/// Which field(s) of the token response carry the JWT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TokenField {
    /// `{"token": …}` (Docker Hub's classic answer).
    #[default]
    Token,
    /// `{"access_token": …}` (the OAuth2 name).
    AccessToken,
    /// Both fields, with the same JWT.
    Both,
}

/// Behaviour of the [`TokenServer`].
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// Anonymous requests (no Basic credentials) get a token with the `pull` actions they ask
    /// for (other actions are dropped) instead of a 401.
    pub allow_anonymous_pull: bool,
    /// Which response field carries the JWT.
    pub field: TokenField,
    /// `expires_in` to answer (also the JWT lifetime). `None` leaves the field out (clients then
    /// assume 60 s) and makes the JWT live 60 s.
    pub expires_in: Option<u64>,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            allow_anonymous_pull: false,
            field: TokenField::Token,
            expires_in: Some(300),
        }
    }
}

/// One request the token server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic user name, if credentials were sent.
    pub user: Option<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// Every scope asked for (repeated `scope` parameters and space-separated lists, in order).
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

struct Shared {
    users: Mutex<HashMap<String, String>>,
    options: Mutex<TokenOptions>,
    service: String,
    issuer: String,
    signer: LeafCert,
    key: EncodingKey,
    count: AtomicUsize,
    log: Mutex<Vec<TokenRequest>>,
    strict_expiry: AtomicBool,
    /// Every token minted, with the instant it stops being valid (for [`TokenServer::validator`]).
    issued: Mutex<HashMap<String, std::time::Instant>>,
}

/// A running token server on a loopback port; stops when dropped.
pub struct TokenServer {
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The token endpoint, `http://127.0.0.1:PORT/token` (the registry's `realm`).
    pub realm: String,
    /// The `service` the registry is configured with (the JWT audience).
    pub service: String,
    /// The JWT issuer the registry trusts.
    pub issuer: String,
    /// The CA whose certificate is the registry's `rootcertbundle` (PEM).
    pub root_pem: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("url", &self.url)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The service name registries started by this crate use.
pub const SERVICE: &str = "testenv-registry";
/// The issuer name tokens of this crate carry.
pub const ISSUER: &str = "testenv-token-issuer";

impl TokenServer {
    /// Start a token server for `users` (name, password) on a free loopback port, signing with
    /// a fresh certificate from `ca`, for service [`SERVICE`] and issuer [`ISSUER`].
    pub async fn start(
        users: Vec<(String, String)>,
        options: TokenOptions,
        ca: &TestCa,
    ) -> anyhow::Result<Self> {
        Self::start_with(users, options, ca, SERVICE, ISSUER).await
    }

    /// [`TokenServer::start`] with an explicit service and issuer.
    pub async fn start_with(
        users: Vec<(String, String)>,
        options: TokenOptions,
        ca: &TestCa,
        service: &str,
        issuer: &str,
    ) -> anyhow::Result<Self> {
        let signer = ca.signing_cert("testenv token signer");
        let key = EncodingKey::from_ec_pem(signer.key_pem.as_bytes())
            .context("loading the token signing key")?;
        let shared = Arc::new(Shared {
            users: Mutex::new(users.into_iter().collect()),
            options: Mutex::new(options),
            service: service.to_string(),
            issuer: issuer.to_string(),
            signer,
            key,
            count: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            strict_expiry: AtomicBool::new(false),
            issued: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/token", get(handle_token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the token server")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = format!("http://{addr}");
        Ok(TokenServer {
            realm: format!("{url}/token"),
            url,
            service: service.to_string(),
            issuer: issuer.to_string(),
            root_pem: ca.ca_pem.clone(),
            shared,
            task,
        })
    }

    /// How many token requests were answered (any status) since start or [`TokenServer::reset`].
    pub fn requests(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// The requests answered since start or [`TokenServer::reset`], oldest first.
    pub fn request_log(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Forget the counted requests.
    pub fn reset(&self) {
        let mut log = self.shared.log.lock().unwrap();
        log.clear();
        self.shared.count.store(0, Ordering::SeqCst);
    }

    /// Replace the known users (e.g. to rotate a password mid-test).
    pub fn set_users(&self, users: &[(&str, &str)]) {
        let mut map = self.shared.users.lock().unwrap();
        map.clear();
        for (u, p) in users {
            map.insert(u.to_string(), p.to_string());
        }
    }

    /// Replace the options.
    pub fn set_options(&self, options: TokenOptions) {
        *self.shared.options.lock().unwrap() = options;
    }

    /// Off by default. When on, the JWT `exp` is back-dated by distribution's 60 s leeway, so
    /// the registry refuses a token exactly `expires_in` seconds after issue (instead of 60 s
    /// later). Clients that read `exp` from the JWT would then see it in the past.
    pub fn set_strict_expiry(&self, on: bool) {
        self.shared.strict_expiry.store(on, Ordering::SeqCst);
    }

    /// A check that a bearer token was minted here and has not expired (`expires_in` to the
    /// second, no leeway): what a [`crate::fault::FaultProxy`] enforces in front of a registry
    /// without token auth of its own.
    pub fn validator(&self) -> crate::fault::TokenCheck {
        let shared = self.shared.clone();
        Arc::new(move |token: &str| {
            shared
                .issued
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|until| std::time::Instant::now() < *until)
        })
    }

    /// Mint a token directly (not counted): `access` lists `(type, name, actions)`.
    pub fn issue(&self, subject: &str, access: &[(&str, &str, &[&str])], ttl_secs: u64) -> String {
        let access = access
            .iter()
            .map(|(t, n, a)| Access {
                r#type: t.to_string(),
                name: n.to_string(),
                actions: a.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        mint(&self.shared, subject, access, ttl_secs).expect("signing a JWT")
    }
}

#[derive(Serialize, Debug, Clone)]
struct Access {
    #[serde(rename = "type")]
    r#type: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

/// distribution's clock-skew leeway on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint(shared: &Shared, subject: &str, access: Vec<Access>, ttl: u64) -> anyhow::Result<String> {
    let now = now_secs();
    let claims = Claims {
        iss: shared.issuer.clone(),
        sub: subject.to_string(),
        aud: shared.service.clone(),
        exp: if shared.strict_expiry.load(Ordering::SeqCst) {
            // Round up so the token lives at least `ttl` seconds, at most one more.
            let now_f = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64());
            let end = (now_f.unwrap_or(0.0) + ttl as f64).ceil() as u64;
            end.saturating_sub(LEEWAY_SECS)
        } else {
            now + ttl
        },
        nbf: now.saturating_sub(1),
        iat: now,
        jti: hex::encode(rand::random::<[u8; 12]>()),
        access,
    };
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("JWT".into());
    header.x5c = Some(vec![STANDARD.encode(&shared.signer.cert_der)]);
    let token = jsonwebtoken::encode(&header, &claims, &shared.key)?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(ttl);
    shared.issued.lock().unwrap().insert(token.clone(), until);
    Ok(token)
}

/// Split `type:name:actions` (the name may itself contain colons, e.g. a port).
fn parse_scope(scope: &str) -> Option<Access> {
    let (ty, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    if ty.is_empty() || name.is_empty() {
        return None;
    }
    Some(Access {
        r#type: ty.to_string(),
        name: name.to_string(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (u, p) = raw.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let headers = [(header::CONTENT_TYPE, "application/json")];
    (status, headers, body.to_string()).into_response()
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    let mut resp = json_response(status, &body);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"testenv-token\""),
        );
    }
    resp
}

async fn handle_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut service = None;
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "service" => service = Some(v.into_owned()),
            "scope" => scopes.extend(v.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    let creds = basic_credentials(&headers);
    let options = shared.options.lock().unwrap().clone();

    let (status, resp) = answer(
        &shared,
        &options,
        creds.as_ref(),
        service.as_deref(),
        &scopes,
    );
    shared.count.fetch_add(1, Ordering::SeqCst);
    shared.log.lock().unwrap().push(TokenRequest {
        user: creds.map(|(u, _)| u),
        service,
        scopes,
        status,
    });
    resp
}

fn answer(
    shared: &Shared,
    options: &TokenOptions,
    creds: Option<&(String, String)>,
    service: Option<&str>,
    scopes: &[String],
) -> (u16, Response) {
    if let Some(s) = service
        && s != shared.service
    {
        let msg = format!("unknown service {s:?}");
        return (
            400,
            error_response(StatusCode::BAD_REQUEST, "INVALID_SERVICE", &msg),
        );
    }
    let requested: Vec<Access> = scopes.iter().filter_map(|s| parse_scope(s)).collect();
    let (subject, granted) = match creds {
        Some((user, pass)) => {
            let ok = shared
                .users
                .lock()
                .unwrap()
                .get(user)
                .is_some_and(|p| p == pass);
            if !ok {
                let resp = error_response(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "invalid username or password",
                );
                return (401, resp);
            }
            (user.clone(), requested)
        }
        None if options.allow_anonymous_pull => {
            let granted = requested
                .into_iter()
                .filter(|a| a.r#type == "repository")
                .map(|mut a| {
                    a.actions.retain(|x| x == "pull");
                    a
                })
                .filter(|a| !a.actions.is_empty())
                .collect();
            (String::new(), granted)
        }
        None => {
            let resp = error_response(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            return (401, resp);
        }
    };
    let ttl = options.expires_in.unwrap_or(60);
    let token = match mint(shared, &subject, granted, ttl) {
        Ok(t) => t,
        Err(e) => {
            let resp = error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                &e.to_string(),
            );
            return (500, resp);
        }
    };
    let mut body = serde_json::Map::new();
    if matches!(options.field, TokenField::Token | TokenField::Both) {
        body.insert("token".into(), token.clone().into());
    }
    if matches!(options.field, TokenField::AccessToken | TokenField::Both) {
        body.insert("access_token".into(), token.into());
    }
    if let Some(n) = options.expires_in {
        body.insert("expires_in".into(), n.into());
    }
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    body.insert("issued_at".into(), issued_at.into());
    (
        200,
        json_response(StatusCode::OK, &serde_json::Value::Object(body)),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_scope;

    #[test]
    fn scopes_parse() {
        let a = parse_scope("repository:library/alpine:pull,push").unwrap();
        assert_eq!(a.r#type, "repository");
        assert_eq!(a.name, "library/alpine");
        assert_eq!(a.actions, vec!["pull", "push"]);
        let a = parse_scope("repository:localhost:5000/x:pull").unwrap();
        assert_eq!(a.name, "localhost:5000/x");
        let a = parse_scope("registry:catalog:*").unwrap();
        assert_eq!(a.actions, vec!["*"]);
        assert!(parse_scope("nonsense").is_none());
    }
}
