//! Opening a node's database: the pool, pending migrations, and a database of the old
//! sample layout moved into the series store.

use crate::db::{self, Db, DbUrl};
use crate::error::StartupError;

/// Opens the database at `url` for a node and brings its data to this version's layout.
pub async fn open_database(url: DbUrl, pool_size: u32) -> Result<Db, StartupError> {
    let db = Db::open(url, pool_size).await?;
    db.run(db::store::upgrade::move_old_samples).await?;
    Ok(db)
}
