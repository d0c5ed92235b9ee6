//! `/api/v1/tokens`: make, list, read and revoke API tokens. Admin only. A new token's
//! secret is in the answer to its creation and nowhere else, ever.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::state::AppState;
use super::views::utc;
use crate::auth::{self, TokenRequest, TokenRequestError};
use crate::db;
use crate::db::models::ApiToken;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::Id;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    role: String,
    company_id: Option<i64>,
    name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub role: String,
    /// The company an operator or viewer token is for; `null` for admin tokens.
    pub company_id: Option<i64>,
    /// The token's first characters, to tell it apart; never the whole secret.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role,
            company_id: t.company_id,
            prefix: t.prefix,
            created_at: utc(t.created_at),
        }
    }
}

/// A token just made: its view and, this once, its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Created {
    #[serde(flatten)]
    view: TokenView,
    token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    id: i64,
    revoked: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    company_id: Option<i64>,
}

#[utoipa::path(post, operation_id = "create_token", path = "/api/v1/tokens", tag = "tokens", request_body = NewTokenBody, responses((status = 201, description = "The token, with its secret shown this once", body = Created)))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewTokenBody>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("make tokens")?;
    let body = body.into_inner();
    let request = TokenRequest::new(&body.role, body.company_id, body.name.as_deref()).map_err(
        |e| match e {
            TokenRequestError::Name(message) => ApiError::bad_request("invalid_name", message),
            role => ApiError::bad_request("invalid_role", role.to_string()),
        },
    )?;
    let role = request.grant.role();
    let (stored, token) = auth::issue(&state.db, request).await?.ok_or_else(|| {
        ApiError::unprocessable(
            "company_not_found",
            format!(
                "company {} does not exist",
                body.company_id.unwrap_or_default()
            ),
        )
    })?;
    tracing::info!(
        token.id = stored.id,
        role = %role,
        company.id = ?stored.company_id,
        by = caller.token_id,
        "token created"
    );
    Ok(HttpResponse::Created().json(Created {
        view: stored.into(),
        token,
    }))
}

#[utoipa::path(get, operation_id = "list_tokens", path = "/api/v1/tokens", tag = "tokens", params(ListQuery), responses((status = 200, description = "Every token (never a secret)", body = Vec<TokenView>)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("list tokens")?;
    let company_id = query.company_id;
    let tokens = state
        .db
        .run(move |conn| db::tokens::list(conn, company_id))
        .await?;
    let views: Vec<TokenView> = tokens.into_iter().map(TokenView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("token {id} does not exist"))
}

#[utoipa::path(get, operation_id = "get_token", path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "The token", body = TokenView)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("read tokens")?;
    let id = id.into_inner().0;
    let token = state
        .db
        .run(move |conn| db::tokens::get(conn, id))
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(HttpResponse::Ok().json(TokenView::from(token)))
}

#[utoipa::path(delete, operation_id = "revoke_token", path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path, minimum = 1)), responses((status = 200, description = "Revoked: refused at once by this coordinator, within a second by the others", body = Revoked)))]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Id>,
) -> Result<HttpResponse, ApiError> {
    caller.admin("revoke tokens")?;
    let id = id.into_inner().0;
    if !state
        .db
        .run(move |conn| db::tokens::revoke(conn, id))
        .await?
    {
        return Err(not_found(id));
    }
    state.tokens.forget_token(id);
    tracing::info!(token.id = id, by = caller.token_id, "token revoked");
    Ok(HttpResponse::Ok().json(Revoked { id, revoked: true }))
}
