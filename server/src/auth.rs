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

/// Reads a secret file, or creates it (mode 0600) with fresh randomness. The file is
/// created whole or not at all (temp file, fsync, rename, fsync of the directory); an empty
/// file holds no secret and is written again. A file that exists
/// but cannot be read as text is an error: it is never replaced, since the tokens issued
/// under it would all stop working.
fn secret_file(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not text; restore it, or delete it to generate a new one",
                    path.display()
                )
            })?;
            let text = text.trim();
            if !text.is_empty() {
                return Ok(text.to_string());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = random_hex()?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    symphainy_engine::file::write_atomically(
        &path.with_file_name(name),
        path,
        &[secret.as_bytes()],
        0o600,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// The token key held in `path`: exactly [`SECRET_BYTES`] bytes written as hex.
fn token_key_file(path: &Path) -> anyhow::Result<[u8; SECRET_BYTES]> {
    let text = secret_file(path)?;
    let mut key = [0u8; SECRET_BYTES];
    match hex::decode(&text) {
        Ok(bytes) if bytes.len() == SECRET_BYTES => {
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        _ => anyhow::bail!(
            "{} must hold {} hex digits (a {SECRET_BYTES}-byte key) and holds something else; \
             restore it, or delete it to generate a new key (every tenant token issued under \
             the old key then stops working)",
            path.display(),
            SECRET_BYTES * 2
        ),
    }
}

impl Keys {
    /// Loads (or creates) the keys in `data_dir`; `admin_token` overrides the stored one.
    /// Returns the keys and the admin token (so the caller can say where it is).
    pub fn load(data_dir: &Path, admin_token: Option<String>) -> anyhow::Result<(Self, String)> {
        let admin = match admin_token {
            Some(token) => token,
            None => secret_file(&data_dir.join("admin.token"))?,
        };
        let token_key = token_key_file(&data_dir.join("token.key"))?;
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

    /// The signature of a token id, given in its canonical text.
    fn mac(&self, token_id: &str) -> String {
        // HMAC accepts keys of any length; this cannot fail for a 32-byte key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.token_key) else {
            return String::new();
        };
        mac.update(token_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The bearer string of a token id.
    pub fn tenant_token(&self, token_id: Id) -> String {
        let id = token_id.to_string();
        format!("{TENANT_TOKEN_PREFIX}.{id}.{}", self.mac(&id))
    }

    /// The token id of a well-signed tenant token.
    pub fn verify(&self, token: &str) -> Option<Id> {
        let mut parts = token.split('.');
        let (prefix, id, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != TENANT_TOKEN_PREFIX || parts.next().is_some() {
            return None;
        }
        let token_id: Id = id.parse().ok()?;
        // Only the form the token was issued in: the id parser also reads other spellings of
        // the same id (lower case), and a bearer string has one spelling. Once the text is
        // the canonical one, it is what the signature covers.
        if token_id.to_string() != id {
            return None;
        }
        constant_time_eq(self.mac(id).as_bytes(), mac.as_bytes()).then_some(token_id)
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
    principal_of(state, state.keys.verify(token)?)
}

/// Whether a logged token is still valid at `now_ms` (neither revoked nor expired).
fn valid_at(token: &symphainy_engine::state::Token, now_ms: i64) -> bool {
    !token.revoked && token.expires_at_ms > now_ms
}

/// Whether a token whose signature was verified already is still valid (what an open
/// WebSocket checks for each message).
pub fn token_valid(state: &AppState, token_id: Id) -> bool {
    let now = state.clock_ms();
    state.runtime.peek(|s| {
        s.token(token_id)
            .is_some_and(|(_, token)| valid_at(token, now))
    })
}

/// The principal of a token whose signature was verified already, if the token is still
/// valid.
fn principal_of(state: &AppState, token_id: Id) -> Option<TenantPrincipal> {
    let now = state.clock_ms();
    state.runtime.peek(|s| {
        let (tenant_id, token) = s.token(token_id)?;
        valid_at(token, now).then(|| TenantPrincipal {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn keys_are_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, admin) = Keys::load(dir.path(), None).unwrap();
        for name in ["admin.token", "token.key"] {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
        assert!(!dir.path().join("token.key.tmp").exists());
        let (second, again) = Keys::load(dir.path(), None).unwrap();
        assert_eq!(admin, again);
        assert_eq!(first.token_key, second.token_key);
        assert!(second.is_admin(&admin));
        // A key file cut short while being created (empty) is written again.
        std::fs::write(dir.path().join("token.key"), "").unwrap();
        let (third, _) = Keys::load(dir.path(), None).unwrap();
        assert_ne!(third.token_key, first.token_key);
    }

    // A token verifies only as issued: not another spelling of its id, not an altered or
    // re-cased signature, not with parts missing or added.
    #[test]
    fn tokens_verify_only_in_the_form_they_were_issued() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, _) = Keys::load(dir.path(), Some("admin".into())).unwrap();
        let id = Id(0x0190_0000_0000_0000_0000_0000_0000_00ab);
        let token = keys.tenant_token(id);
        assert_eq!(keys.verify(&token), Some(id));
        let (prefix, rest) = token.split_once('.').unwrap();
        let (id_text, mac) = rest.split_once('.').unwrap();
        assert!(id_text.chars().any(|c| c.is_ascii_uppercase()));
        let refused = [
            format!("{prefix}.{}.{mac}", id_text.to_ascii_lowercase()),
            format!("{prefix}.{id_text}.{}", mac.to_ascii_uppercase()),
            format!(
                "{prefix}.{id_text}.{}{}",
                &mac[..mac.len() - 1],
                if mac.ends_with('0') { '1' } else { '0' }
            ),
            format!("{prefix}.{id_text}"),
            format!("{token}.extra"),
            format!("x{token}"),
            String::new(),
        ];
        for bad in refused {
            assert_eq!(keys.verify(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_damaged_token_key_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let cases: [&[u8]; 3] = [b"not hex at all", b"abcd", &[0xff, 0xfe, 0x00, 0x41]];
        for bytes in cases {
            std::fs::write(&path, bytes).unwrap();
            let e = Keys::load(dir.path(), Some("admin".into())).unwrap_err();
            assert!(format!("{e:#}").contains("token.key"), "{e:#}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the file was replaced"
            );
        }
        // Unreadable (a directory where the file should be): an error, nothing replaced.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let e = Keys::load(dir.path(), Some("admin".into())).unwrap_err();
        assert!(format!("{e:#}").contains("reading"), "{e:#}");
        assert!(path.is_dir());
    }
}
