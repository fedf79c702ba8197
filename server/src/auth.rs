//! Zero trust: the admin token, signed tenant tokens, and the extractors that turn a request
//! into a principal. The tenant always comes from the token, never from the request.
//!
//! A tenant token is `st.<token_id>.<hmac>`: the token id (a ULID recorded in the log by
//! `token_issued`) and the hex HMAC-SHA256 of the id under the node's token key (kept in
//! `DATA_DIR/token.key`, mode 0600, never logged). Expiry and revocation are the logged facts
//! of that token id.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use symphainy_engine::Id;

use crate::app::AppState;
use crate::error::AppError;

/// Prefix of tenant tokens.
pub const TENANT_TOKEN_PREFIX: &str = "st";
/// Bytes of the node's token key and of generated admin tokens.
pub const SECRET_BYTES: usize = 32;

/// Keys the server authenticates with.
#[derive(Clone)]
pub struct Keys {
    admin_token_hash: [u8; 32],
    token_key: [u8; SECRET_BYTES],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn random_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Reads a secret file, or creates it (mode 0600) with fresh randomness.
fn secret_file(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim().to_string();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    let secret = random_hex()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

impl Keys {
    /// Loads (or creates) the keys in `data_dir`; `admin_token` overrides the stored one.
    /// Returns the keys and the admin token (so the caller can say where it is).
    pub fn load(data_dir: &Path, admin_token: Option<String>) -> anyhow::Result<(Self, String)> {
        let admin = match admin_token {
            Some(token) => token,
            None => secret_file(&data_dir.join("admin.token"))?,
        };
        let key_hex = secret_file(&data_dir.join("token.key"))?;
        let mut token_key = [0u8; SECRET_BYTES];
        let decoded = hex::decode(&key_hex).unwrap_or_default();
        if decoded.len() == SECRET_BYTES {
            token_key.copy_from_slice(&decoded);
        } else {
            token_key.copy_from_slice(&Sha256::digest(key_hex.as_bytes()));
        }
        let admin_token_hash = Sha256::digest(admin.as_bytes()).into();
        Ok((
            Self {
                admin_token_hash,
                token_key,
            },
            admin,
        ))
    }

    /// True when `token` is the admin token (compared by hash, in constant time).
    pub fn is_admin(&self, token: &str) -> bool {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        constant_time_eq(&hash, &self.admin_token_hash)
    }

    fn mac(&self, token_id: Id) -> String {
        // HMAC accepts keys of any length; this cannot fail for a 32-byte key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.token_key) else {
            return String::new();
        };
        mac.update(token_id.to_string().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The bearer string of a token id.
    pub fn tenant_token(&self, token_id: Id) -> String {
        format!("{TENANT_TOKEN_PREFIX}.{token_id}.{}", self.mac(token_id))
    }

    /// The token id of a well-signed tenant token.
    pub fn verify(&self, token: &str) -> Option<Id> {
        let mut parts = token.split('.');
        let (prefix, id, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != TENANT_TOKEN_PREFIX || parts.next().is_some() {
            return None;
        }
        let token_id: Id = id.parse().ok()?;
        constant_time_eq(self.mac(token_id).as_bytes(), mac.as_bytes()).then_some(token_id)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request: the Authorization header, or `?token=` (WebSocket only).
fn bearer(parts: &Parts, allow_query: bool) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string());
    }
    if allow_query {
        #[derive(serde::Deserialize)]
        struct TokenQuery {
            token: Option<String>,
        }
        let Query(q) = Query::<TokenQuery>::try_from_uri(&parts.uri).ok()?;
        return q.token;
    }
    None
}

/// A caller authenticated with a tenant token.
#[derive(Clone, Debug)]
pub struct TenantPrincipal {
    pub tenant_id: String,
    pub user_id: String,
    pub token_id: Id,
    /// When the token stops being accepted.
    pub expires_at_ms: i64,
}

/// The admin.
#[derive(Clone, Copy, Debug)]
pub struct AdminPrincipal;

/// Either kind of caller (endpoints open to both, such as `/runtime/metrics`).
#[derive(Clone, Debug)]
pub enum Principal {
    Admin,
    Tenant(TenantPrincipal),
}

/// Resolves a tenant token against the logged facts.
pub fn tenant_of(state: &AppState, token: &str) -> Option<TenantPrincipal> {
    let token_id = state.keys.verify(token)?;
    let now = state.clock_ms();
    state.runtime.peek(|s| {
        let (tenant_id, token) = s.token(token_id)?;
        (!token.revoked && token.expires_at_ms > now).then(|| TenantPrincipal {
            tenant_id: tenant_id.to_string(),
            user_id: token.user_id.clone(),
            token_id,
            expires_at_ms: token.expires_at_ms,
        })
    })
}

fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, AppError> {
    let allow_query = parts.uri.path() == "/ws";
    let token = bearer(parts, allow_query).ok_or_else(AppError::unauthorized)?;
    if state.keys.is_admin(&token) {
        return Ok(Principal::Admin);
    }
    let tenant = tenant_of(state, &token).ok_or_else(AppError::unauthorized)?;
    // Every tenant request counts against its tenant's rate, whatever the route.
    state.rate_limit(&tenant.tenant_id)?;
    Ok(Principal::Tenant(tenant))
}

impl<S> FromRequestParts<S> for Principal
where
    Arc<AppState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts, &Arc::<AppState>::from_ref(state))
    }
}

impl<S> FromRequestParts<S> for TenantPrincipal
where
    Arc<AppState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = Arc::<AppState>::from_ref(state);
        match authenticate(parts, &app)? {
            Principal::Tenant(tenant) => Ok(tenant),
            // Tenant endpoints need a tenant: the admin token names none.
            Principal::Admin => Err(AppError::unauthorized()),
        }
    }
}

impl<S> FromRequestParts<S> for AdminPrincipal
where
    Arc<AppState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match authenticate(parts, &Arc::<AppState>::from_ref(state))? {
            Principal::Admin => Ok(AdminPrincipal),
            Principal::Tenant(_) => Err(AppError::unauthorized()),
        }
    }
}
