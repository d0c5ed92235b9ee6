//! Queries on `api_tokens`. Only hashes are stored: the tokens' makers hash them first.

use diesel::prelude::*;

use super::models::{ApiToken, NewApiToken};
use super::schema::api_tokens;
use super::DbConn;

pub fn create(conn: &mut DbConn, new: &NewApiToken<'_>) -> QueryResult<ApiToken> {
    diesel::insert_into(api_tokens::table)
        .values(new)
        .returning(api_tokens::all_columns)
        .get_result(conn)
}

/// Tokens in id order: every one, or those of one company.
pub fn list(conn: &mut DbConn, company_id: Option<i64>) -> QueryResult<Vec<ApiToken>> {
    let mut query = api_tokens::table
        .select(ApiToken::as_select())
        .order(api_tokens::id)
        .into_boxed();
    if let Some(company_id) = company_id {
        query = query.filter(api_tokens::company_id.eq(company_id));
    }
    query.load(conn)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .find(id)
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// The token whose secret hashes to `secret_hash`.
pub fn find_by_hash(conn: &mut DbConn, secret_hash: &str) -> QueryResult<Option<ApiToken>> {
    api_tokens::table
        .filter(api_tokens::secret_hash.eq(secret_hash))
        .select(ApiToken::as_select())
        .first(conn)
        .optional()
}

/// Deletes a token; answers whether it existed.
pub fn revoke(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    Ok(diesel::delete(api_tokens::table.find(id)).execute(conn)? > 0)
}

/// Stores `new` (a token already checked and hashed by its maker); `None` when the
/// company it names does not exist.
pub fn issue(conn: &mut DbConn, new: &NewApiToken<'_>) -> QueryResult<Option<ApiToken>> {
    super::write_transaction(conn, |conn| {
        if let Some(company_id) = new.company_id {
            if super::companies::get(conn, company_id)?.is_none() {
                return Ok(None);
            }
        }
        create(conn, new).map(Some)
    })
}
