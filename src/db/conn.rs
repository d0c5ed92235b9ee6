//! [`DbConn`], one connection type over PostgreSQL and SQLite, and what every query
//! module shares: chunked id lists and transactions that take the write lock first.

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::QueryResult;

/// A connection to whichever backend the `--db` URL named.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Most ids in one `IN (…)` list; SQLite binds at most 32766 parameters per statement.
pub(super) const MAX_IDS_PER_QUERY: usize = 10_000;

/// Runs `load` over `ids` a chunk at a time, so no statement binds more parameters than a
/// backend takes, and concatenates what the chunks return.
pub(super) fn in_chunks<T>(
    ids: &[i64],
    mut load: impl FnMut(&[i64]) -> QueryResult<Vec<T>>,
) -> QueryResult<Vec<T>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
        found.extend(load(chunk)?);
    }
    Ok(found)
}

/// The `VALUES` list of a multi-row statement with bound parameters: `rows` tuples of
/// `width` placeholders numbered from 1, `mark` being `$` (PostgreSQL) or `?` (SQLite):
/// `($1, $2), ($3, $4)`.
pub fn values_list(mark: char, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 7);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                out.push_str(", ");
            }
            out.push(mark);
            out.push_str(&(row * width + column + 1).to_string());
        }
        out.push(')');
    }
    out
}

/// Runs `f` in a transaction that takes the write lock up front.
///
/// On SQLite a plain `BEGIN` that later writes can fail with "database is locked"
/// without waiting for the busy timeout; `BEGIN IMMEDIATE` waits its turn instead.
/// On PostgreSQL this is an ordinary transaction.
pub fn write_transaction<T, F>(conn: &mut DbConn, f: F) -> QueryResult<T>
where
    F: FnOnce(&mut DbConn) -> QueryResult<T>,
{
    match conn {
        DbConn::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        DbConn::Pg(_) => {
            <DbConn as Connection>::TransactionManager::begin_transaction(conn)?;
        }
    }
    match f(conn) {
        Ok(value) => match <DbConn as Connection>::TransactionManager::commit_transaction(conn) {
            Ok(()) => Ok(value),
            Err(commit_error) => {
                let _ = <DbConn as Connection>::TransactionManager::rollback_transaction(conn);
                Err(commit_error)
            }
        },
        Err(error) => {
            <DbConn as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_values_list_numbers_its_placeholders_row_by_row() {
        assert_eq!(values_list('$', 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values_list('?', 3, 1), "(?1), (?2), (?3)");
        assert_eq!(values_list('?', 0, 5), "");
    }

    #[test]
    fn long_id_lists_are_queried_in_chunks_and_joined() {
        let ids: Vec<i64> = (0..25_000).collect();
        let mut sizes = Vec::new();
        let found = in_chunks(&ids, |chunk| {
            sizes.push(chunk.len());
            Ok(chunk.to_vec())
        })
        .unwrap();
        assert_eq!(sizes, vec![MAX_IDS_PER_QUERY, MAX_IDS_PER_QUERY, 5_000]);
        assert_eq!(found, ids);
        let failing = in_chunks(&ids, |_| {
            Err::<Vec<i64>, _>(diesel::result::Error::NotFound)
        });
        assert!(failing.is_err());
    }
}
