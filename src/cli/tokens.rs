//! `vigil token create|list|revoke`: API tokens from the command line, for the first
//! admin token of a deployment and for scripts. Each returns the text to print.

use std::fmt::Write;

use crate::auth::{self, TokenRequest, TokenRequestError};
use crate::db::{self, Db};
use crate::error::StartupError;

fn refused(message: impl Into<String>) -> StartupError {
    StartupError::Settings(message.into())
}

/// A token just made: the secret (for stdout, so `$(vigil token create …)` is the token)
/// and a note on what it is (for stderr).
pub struct Created {
    pub token: String,
    pub note: String,
}

pub async fn create(
    db: &Db,
    role: &str,
    company: Option<i64>,
    name: Option<&str>,
) -> Result<Created, StartupError> {
    let request = TokenRequest::new(role, company, name).map_err(|e| {
        let flag = match e {
            TokenRequestError::Role(_) => "--role",
            TokenRequestError::Grant(_) => "--company",
            TokenRequestError::Name(_) => "--name",
        };
        refused(format!("{flag}: {e}"))
    })?;
    let role = request.grant.role();
    let (stored, token) = auth::issue(db, request).await?.ok_or_else(|| {
        refused(format!(
            "--company: company {} does not exist",
            company.unwrap_or_default()
        ))
    })?;
    tracing::info!(token.id = stored.id, role = %role, company.id = ?company, "token created");
    let scope = match stored.company_id {
        Some(id) => format!(" of company {id}"),
        None => String::new(),
    };
    Ok(Created {
        token,
        note: format!(
            "token {} ({}{scope}, named {:?}) created: keep it now, it is not shown again",
            stored.id, stored.role, stored.name
        ),
    })
}

/// Every token, one line each: id, role, company, prefix, created, name.
pub async fn list(db: &Db) -> Result<String, StartupError> {
    let tokens = db.run(|conn| db::tokens::list(conn, None)).await?;
    let mut out = format!(
        "{:>5}  {:<8}  {:>7}  {:<12}  {:<19}  NAME",
        "ID", "ROLE", "COMPANY", "PREFIX", "CREATED (UTC)"
    );
    for t in tokens {
        let company = t.company_id.map(|c| c.to_string()).unwrap_or("-".into());
        let _ = write!(
            out,
            "\n{:>5}  {:<8}  {:>7}  {:<12}  {:<19}  {}",
            t.id,
            t.role,
            company,
            format!("{}…", t.prefix),
            t.created_at.format("%Y-%m-%d %H:%M:%S"),
            t.name
        );
    }
    Ok(out)
}

pub async fn revoke(db: &Db, id: i64) -> Result<String, StartupError> {
    if db.run(move |conn| db::tokens::revoke(conn, id)).await? {
        tracing::info!(token.id = id, "token revoked");
        Ok(format!("token {id} revoked"))
    } else {
        Err(refused(format!(
            "no token {id}: `vigil token list` shows them"
        )))
    }
}
