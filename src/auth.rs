//! Who may call: API tokens with their roles, and the cluster token nodes share.
//!
//! An API token is `vgl_` and 64 hex digits (256 random bits). It is shown once, when
//! made; the database keeps its SHA-256 only, and finds a presented token by that hash.
//! A random 256-bit secret needs no slow hash: nothing can be guessed from its digest.
//!
//! The cluster token is a secret every node of one cluster is given (or, under
//! `vigil serve`, one the process makes at start). Nodes compare it in constant time.

use std::fmt;
use std::str::FromStr;

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::db::models::{ApiToken, NewApiToken};

/// What every API token starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "vgl_";
/// Hex digits shown of a token in lists, after [`TOKEN_PREFIX`]: enough to tell tokens
/// apart, too few to matter.
const SHOWN_DIGITS: usize = 6;
/// Shortest cluster token accepted.
pub const MIN_CLUSTER_TOKEN_CHARS: usize = 16;
/// Longest API token name.
pub const MAX_TOKEN_NAME_CHARS: usize = 100;

/// A token's name as given: trimmed, not empty, not too long, no control characters.
pub fn token_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("a token's name must not be empty".into());
    }
    if trimmed.chars().count() > MAX_TOKEN_NAME_CHARS {
        return Err(format!(
            "a token's name must be at most {MAX_TOKEN_NAME_CHARS} characters"
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("a token's name must not contain control characters".into());
    }
    Ok(trimmed.to_string())
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, in every company.
    Admin,
    /// One company's devices, starts and stops, events and metrics.
    Operator,
    /// One company, read only.
    Viewer,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Operator, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Operator and viewer tokens belong to one company; admin tokens to none.
    pub fn is_scoped(self) -> bool {
        self != Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {0:?}: use admin, operator or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// A token's role and company, as one checked pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    role: Role,
    company_id: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("an admin token is for every company: give no company")]
    AdminWithCompany,
    #[error("a {0} token is for one company: give its id")]
    ScopedWithoutCompany(Role),
}

impl Grant {
    pub fn new(role: Role, company_id: Option<i64>) -> Result<Self, GrantError> {
        match (role.is_scoped(), company_id) {
            (false, Some(_)) => Err(GrantError::AdminWithCompany),
            (true, None) => Err(GrantError::ScopedWithoutCompany(role)),
            _ => Ok(Grant { role, company_id }),
        }
    }

    pub fn admin() -> Self {
        Grant {
            role: Role::Admin,
            company_id: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The one company a scoped token sees; `None` for admin (every company).
    pub fn company_id(&self) -> Option<i64> {
        self.company_id
    }

    /// Whether objects of `company_id` are visible to this grant.
    pub fn sees(&self, company_id: i64) -> bool {
        self.company_id.is_none_or(|own| own == company_id)
    }

    /// Whether this grant may change things (in the companies it sees).
    pub fn may_write(&self) -> bool {
        self.role != Role::Viewer
    }
}

/// A token someone asked for, checked: what it may do and what it is called (its
/// role's name when none is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant: Grant,
    pub name: String,
}

/// Why a token request was refused; each names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenRequestError {
    #[error(transparent)]
    Role(#[from] UnknownRole),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("{0}")]
    Name(String),
}

impl TokenRequest {
    pub fn new(
        role: &str,
        company_id: Option<i64>,
        name: Option<&str>,
    ) -> Result<Self, TokenRequestError> {
        let role: Role = role.parse()?;
        let grant = Grant::new(role, company_id)?;
        let name = token_name(name.unwrap_or(role.as_str())).map_err(TokenRequestError::Name)?;
        Ok(TokenRequest { grant, name })
    }
}

/// Why a checked token was not made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Makes the token `request` asks for: stored (hashed), and its secret, shown this once.
/// `None` when its company does not exist.
pub async fn issue(
    db: &crate::db::Db,
    request: TokenRequest,
) -> Result<Option<(ApiToken, String)>, IssueError> {
    let secret = new_secret()?;
    let token = secret.secret.clone();
    let stored = db
        .run(move |conn| {
            crate::db::tokens::issue(
                conn,
                &NewApiToken {
                    name: &request.name,
                    role: request.grant.role().as_str(),
                    company_id: request.grant.company_id(),
                    secret_hash: &secret.hash,
                    prefix: &secret.prefix,
                },
            )
        })
        .await?;
    Ok(stored.map(|stored| (stored, token)))
}

/// A new API token: the secret to show once, and what the database keeps.
pub struct NewSecret {
    pub secret: String,
    pub hash: String,
    /// `vgl_` and the first hex digits, for lists.
    pub prefix: String,
}

impl fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewSecret({}…)", self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system's random source failed")]
pub struct RandomUnavailable;

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, RandomUnavailable> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| RandomUnavailable)?;
    Ok(hex(&buffer))
}

/// A fresh API token.
pub fn new_secret() -> Result<NewSecret, RandomUnavailable> {
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    Ok(NewSecret {
        hash: hash(&secret),
        prefix: secret[..TOKEN_PREFIX.len() + SHOWN_DIGITS].to_string(),
        secret,
    })
}

/// The SHA-256 of a token, as stored.
pub fn hash(secret: &str) -> String {
    hex(&sha256(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Whether `presented` could be an API token at all (so junk is refused before any
/// database work).
pub fn looks_like_token(presented: &str) -> bool {
    presented.len() == TOKEN_PREFIX.len() + 64
        && presented.starts_with(TOKEN_PREFIX)
        && presented[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// The secret nodes of one cluster share.
#[derive(Clone)]
pub struct ClusterToken {
    secret: String,
    digest: [u8; 32],
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterTokenError {
    #[error("the cluster token must be at least {MIN_CLUSTER_TOKEN_CHARS} characters")]
    TooShort,
    #[error("the cluster token must be printable ASCII without spaces")]
    NotPrintable,
}

impl ClusterToken {
    /// A token given by the operator (file or environment), surrounding blanks removed.
    pub fn new(secret: &str) -> Result<Self, ClusterTokenError> {
        let secret = secret.trim();
        if secret.len() < MIN_CLUSTER_TOKEN_CHARS {
            return Err(ClusterTokenError::TooShort);
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClusterTokenError::NotPrintable);
        }
        Ok(ClusterToken {
            digest: sha256(secret.as_bytes()),
            secret: secret.to_string(),
        })
    }

    /// A fresh token for the nodes of one process (`vigil serve`).
    pub fn generate() -> Result<Self, RandomUnavailable> {
        let secret = random_hex(32)?;
        Ok(ClusterToken {
            digest: sha256(secret.as_bytes()),
            secret,
        })
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether `presented` is this token. Both sides are hashed first, so the time taken
    /// tells nothing of the secret, not even its length.
    pub fn matches(&self, presented: &str) -> bool {
        sha256(presented.as_bytes()).ct_eq(&self.digest).into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_stored_as_their_hash() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(looks_like_token(&a.secret), "{}", a.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret[4..]));
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.prefix.len(), 10);
    }

    #[test]
    fn only_well_formed_tokens_look_like_tokens() {
        assert!(!looks_like_token(""));
        assert!(!looks_like_token("vgl_"));
        assert!(!looks_like_token(&format!("vgl_{}", "z".repeat(64))));
        assert!(!looks_like_token(&format!("xyz_{}", "a".repeat(64))));
        assert!(looks_like_token(&format!("vgl_{}", "a".repeat(64))));
    }

    #[test]
    fn grants_pair_roles_with_companies() {
        assert_eq!(
            Grant::new(Role::Admin, Some(1)),
            Err(GrantError::AdminWithCompany)
        );
        assert_eq!(
            Grant::new(Role::Viewer, None),
            Err(GrantError::ScopedWithoutCompany(Role::Viewer))
        );
        let operator = Grant::new(Role::Operator, Some(7)).unwrap();
        assert!(operator.sees(7) && !operator.sees(8) && operator.may_write());
        let viewer = Grant::new(Role::Viewer, Some(7)).unwrap();
        assert!(viewer.sees(7) && !viewer.may_write());
        assert!(Grant::admin().sees(8) && Grant::admin().may_write());
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn token_requests_are_checked_field_by_field() {
        let viewer = TokenRequest::new("viewer", Some(3), None).unwrap();
        assert_eq!(viewer.grant, Grant::new(Role::Viewer, Some(3)).unwrap());
        assert_eq!(viewer.name, "viewer");
        let named = TokenRequest::new("admin", None, Some(" ops ")).unwrap();
        assert_eq!(named.name, "ops");
        assert!(matches!(
            TokenRequest::new("root", None, None),
            Err(TokenRequestError::Role(_))
        ));
        assert!(matches!(
            TokenRequest::new("operator", None, None),
            Err(TokenRequestError::Grant(_))
        ));
        assert!(matches!(
            TokenRequest::new("admin", None, Some("  ")),
            Err(TokenRequestError::Name(_))
        ));
    }

    #[test]
    fn cluster_tokens_match_only_themselves() {
        let token = ClusterToken::new("  a-long-enough-secret \n").unwrap();
        assert!(token.matches("a-long-enough-secret"));
        assert!(!token.matches("a-long-enough-secreT"));
        assert!(!token.matches(""));
        assert_eq!(
            ClusterToken::new("short").err(),
            Some(ClusterTokenError::TooShort)
        );
        assert_eq!(
            ClusterToken::new("has a space in the middle").err(),
            Some(ClusterTokenError::NotPrintable)
        );
        let generated = ClusterToken::generate().unwrap();
        assert!(generated.matches(generated.secret()));
    }
}
