//! Many claims in one statement: the compare-and-set of [`super::assignments::claim`]
//! for a whole batch of devices, so a start of 10,000 devices is a few statements, not
//! 10,000 round trips.
//!
//! ```sql
//! WITH v(device_id, expected, server_id) AS (VALUES ($1, $2, $3), …)
//! UPDATE assignments SET server_id = v.server_id, epoch = v.expected + 1, updated_at = …
//! FROM v WHERE assignments.device_id = v.device_id AND assignments.epoch = v.expected
//! RETURNING assignments.device_id, assignments.epoch
//!
//! INSERT INTO assignments (device_id, server_id, epoch) VALUES ($1, $2, 1), …
//! ON CONFLICT (device_id) DO NOTHING RETURNING device_id, epoch
//! ```
//!
//! A device whose epoch moved meanwhile (or that another claim inserted first) comes
//! back in no row: its claim is lost, as with the single compare-and-set.

use std::collections::HashMap;

use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Nullable};

use super::DbConn;

/// Claims per statement: three binds each, well within both backends' limits.
const CLAIMS_PER_STATEMENT: usize = 3000;

/// One claim: the device, the epoch it was read at (`None`: it had no assignment), and
/// its new owner (`None`: a release).
pub type Claim = (i64, Option<i64>, Option<i64>);

/// The claims of devices that had an assignment, as one `UPDATE … FROM`.
struct ClaimUpdate<'a>(&'a [(i64, i64, Option<i64>)]);

/// The claims of devices that had none, as one `INSERT … ON CONFLICT DO NOTHING`.
struct ClaimInsert<'a>(&'a [(i64, Option<i64>)]);

impl<DB> QueryFragment<DB> for ClaimUpdate<'_>
where
    DB: Backend + HasSqlType<BigInt>,
    i64: ToSql<BigInt, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("WITH v(device_id, expected, server_id) AS (VALUES ");
        for (i, (device_id, expected, server_id)) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(device_id)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(expected)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(server_id)?;
            out.push_sql(")");
        }
        out.push_sql(
            ") UPDATE assignments SET server_id = v.server_id, epoch = v.expected + 1, \
             updated_at = CURRENT_TIMESTAMP FROM v \
             WHERE assignments.device_id = v.device_id AND assignments.epoch = v.expected \
             RETURNING assignments.device_id, assignments.epoch",
        );
        Ok(())
    }
}

impl<DB> QueryFragment<DB> for ClaimInsert<'_>
where
    DB: Backend + HasSqlType<BigInt>,
    i64: ToSql<BigInt, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO assignments (device_id, server_id, epoch) VALUES ");
        for (i, (device_id, server_id)) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<BigInt, _>(device_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(server_id)?;
            out.push_sql(", 1)");
        }
        out.push_sql(" ON CONFLICT (device_id) DO NOTHING RETURNING device_id, epoch");
        Ok(())
    }
}

macro_rules! returning_claims {
    ($statement:ident) => {
        impl QueryId for $statement<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl Query for $statement<'_> {
            type SqlType = (BigInt, BigInt);
        }

        impl<Conn> RunQueryDsl<Conn> for $statement<'_> {}
    };
}

returning_claims!(ClaimUpdate);
returning_claims!(ClaimInsert);

/// Claims every device of `claims` as [`super::assignments::claim`] claims one, in as
/// few statements as the backend allows (call inside a transaction to make it one
/// write). Answers, in the order of `claims`, each device's new epoch, or `None` where
/// someone else changed its owner meanwhile. A device may appear once.
pub fn claim_many(conn: &mut DbConn, claims: &[Claim]) -> QueryResult<Vec<Option<i64>>> {
    let mut updates = Vec::new();
    let mut inserts = Vec::new();
    for &(device_id, expected, server_id) in claims {
        match expected {
            Some(epoch) => updates.push((device_id, epoch, server_id)),
            None => inserts.push((device_id, server_id)),
        }
    }
    let mut won: HashMap<i64, i64> = HashMap::with_capacity(claims.len());
    for chunk in updates.chunks(CLAIMS_PER_STATEMENT) {
        let statement = ClaimUpdate(chunk);
        let rows: Vec<(i64, i64)> = match conn {
            DbConn::Pg(c) => statement.load(c)?,
            DbConn::Sqlite(c) => statement.load(c)?,
        };
        won.extend(rows);
    }
    for chunk in inserts.chunks(CLAIMS_PER_STATEMENT) {
        let statement = ClaimInsert(chunk);
        let rows: Vec<(i64, i64)> = match conn {
            DbConn::Pg(c) => statement.load(c)?,
            DbConn::Sqlite(c) => statement.load(c)?,
        };
        won.extend(rows);
    }
    Ok(claims
        .iter()
        .map(|(device_id, _, _)| won.get(device_id).copied())
        .collect())
}
