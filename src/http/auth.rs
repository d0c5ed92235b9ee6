//! Credentials on HTTP: the coordinator's API tokens (`Authorization: Bearer vgl_…`,
//! checked by [`require_token`], the caller handed to handlers as [`Caller`]) and the
//! cluster token every call to a monitor server carries ([`require_cluster_token`]).

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::coordinator::state::AppState;
use super::error::ApiError;
use super::rate::RateLimiter;
use super::token_cache::{Checked, TokenCache};
use crate::auth::{self, ClusterToken, Grant, Role};
use crate::db::{self, Db};

/// Who is calling: the token's id and what it may do. Handlers take it as an argument;
/// [`require_token`] has put it on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub token_id: i64,
    pub grant: Grant,
}

impl Caller {
    /// The one company a scoped token sees; `None` for admin.
    pub fn scope(&self) -> Option<i64> {
        self.grant.company_id()
    }

    /// Whether objects of `company_id` exist for this caller.
    pub fn sees(&self, company_id: i64) -> bool {
        self.grant.sees(company_id)
    }

    /// The company filter of a list that may name one (`company_id`): for an admin,
    /// what was asked; for a scoped token its own company, or `None` when it asked for
    /// another (the list is empty, as if that company had nothing).
    pub fn list_filter(&self, asked: Option<i64>) -> Option<Option<i64>> {
        match (self.scope(), asked) {
            (Some(own), Some(asked)) if own != asked => None,
            (Some(own), _) => Some(Some(own)),
            (None, asked) => Some(asked),
        }
    }

    /// Refuses (403) anyone but an admin.
    pub fn admin(&self, what: &str) -> Result<(), ApiError> {
        if self.grant.role() == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only an admin token may {what}; this is a {} token",
                self.grant.role()
            )))
        }
    }

    /// Refuses (403) a viewer: the route changes something.
    pub fn writer(&self) -> Result<(), ApiError> {
        if self.grant.may_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "a viewer token may only read; this needs an operator or admin token".into(),
            ))
        }
    }
}

impl From<Checked> for Caller {
    fn from(checked: Checked) -> Self {
        Caller {
            token_id: checked.token_id,
            grant: checked.grant,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Caller>()
                .copied()
                .ok_or_else(missing_token),
        )
    }
}

fn missing_token() -> ApiError {
    ApiError::unauthorized(
        "missing_token",
        "this route needs a token: send the header Authorization: Bearer <token>",
    )
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized(
        "invalid_token",
        "the token is not valid: it is unknown or was revoked",
    )
}

/// The credential of an `Authorization: Bearer …` header; `None` when there is none.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| invalid_token())?;
    let (scheme, credential) = value.split_once(' ').ok_or_else(invalid_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "use the Bearer scheme: Authorization: Bearer <token>",
        ));
    }
    Ok(Some(credential.trim()))
}

/// The caller a presented API token stands for: from `cache` when it was read a moment
/// ago, from the database otherwise.
pub async fn identify(db: &Db, cache: &TokenCache, presented: &str) -> Result<Caller, ApiError> {
    if !auth::looks_like_token(presented) {
        return Err(invalid_token());
    }
    let hash = auth::hash(presented);
    if let Some(checked) = cache.get(&hash, Instant::now()) {
        return Ok(checked.into());
    }
    let read = cache.read_start(Instant::now());
    let key = hash.clone();
    let token = db
        .run(move |conn| db::tokens::find_by_hash(conn, &key))
        .await?
        .ok_or_else(invalid_token)?;
    let grant = token
        .role
        .parse::<Role>()
        .ok()
        .and_then(|role| Grant::new(role, token.company_id).ok())
        .ok_or_else(|| {
            tracing::error!(token.id = token.id, role = %token.role, "stored token has a bad role");
            invalid_token()
        })?;
    let checked = Checked {
        token_id: token.id,
        grant,
    };
    cache.put(hash, checked, read);
    Ok(checked.into())
}

/// Middleware: the request carries a valid API token (401 otherwise) within its rate
/// (429 otherwise); its [`Caller`] goes on the request for the handler.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no database for authentication")))?;
    let presented = bearer(req.headers())?.ok_or_else(missing_token)?;
    let caller = identify(&state.db, &state.tokens, presented).await?;
    if let Some(limiter) = req.app_data::<web::Data<RateLimiter>>() {
        limiter
            .take(caller.token_id, Instant::now())
            .map_err(|retry_after_secs| {
                tracing::debug!(token.id = caller.token_id, "rate limited");
                ApiError::RateLimited { retry_after_secs }
            })?;
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// Middleware for a monitor server: every call but `/healthz` carries the cluster token
/// (401 otherwise).
pub async fn require_cluster_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.path() != "/healthz" {
        let token = req
            .app_data::<web::Data<ClusterToken>>()
            .cloned()
            .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("no cluster token configured")))?;
        let presented = bearer(req.headers())?.ok_or_else(|| {
            ApiError::unauthorized(
                "missing_cluster_token",
                "monitor servers answer only nodes of their cluster: send Authorization: Bearer <cluster token>",
            )
        })?;
        if !token.matches(presented) {
            return Err(ApiError::unauthorized(
                "invalid_cluster_token",
                "the cluster token is not this cluster's",
            )
            .into());
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn lists_are_narrowed_to_a_scoped_tokens_company() {
        let scoped = Caller {
            token_id: 1,
            grant: Grant::new(Role::Viewer, Some(7)).unwrap(),
        };
        assert_eq!(scoped.list_filter(None), Some(Some(7)));
        assert_eq!(scoped.list_filter(Some(7)), Some(Some(7)));
        assert_eq!(scoped.list_filter(Some(8)), None);
        let admin = Caller {
            token_id: 2,
            grant: Grant::admin(),
        };
        assert_eq!(admin.list_filter(None), Some(None));
        assert_eq!(admin.list_filter(Some(8)), Some(Some(8)));
    }

    #[test]
    fn bearer_credentials_are_read_from_the_header() {
        assert_eq!(bearer(&HeaderMap::new()).unwrap(), None);
        assert_eq!(bearer(&headers("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")).unwrap(), Some("abc"));
        assert!(bearer(&headers("Basic dXNlcjpwYXNz")).is_err());
        assert!(bearer(&headers("Bearer")).is_err());
    }
}
