//! The database layer on both backends: the two migration trees agree, migrating twice
//! is harmless, and ownership epochs only grow.

use std::collections::BTreeSet;

use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use vigil::db::models::NewDevice;
use vigil::db::{self, Db, DbConn};

use crate::helpers::{postgres_url, scratch, Backend};

crate::on_both_backends!(
    migrating_an_existing_database_again_changes_nothing,
    ownership_epochs_only_grow,
);

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

fn columns(conn: &mut DbConn) -> diesel::QueryResult<BTreeSet<(String, String)>> {
    let query = match conn {
        DbConn::Sqlite(_) => {
            "SELECT m.name AS table_name, p.name AS column_name \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        DbConn::Pg(_) => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name \
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
    };
    let rows: Vec<Column> = diesel::sql_query(query).load(conn)?;
    Ok(rows
        .into_iter()
        .map(|c| (c.table_name, c.column_name))
        .collect())
}

#[actix_rt::test]
async fn both_backends_migrate_to_the_same_tables() {
    if postgres_url("api::schema::both_backends_migrate_to_the_same_tables").is_none() {
        return;
    }
    let mut found = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let scratch = scratch(backend);
        let db = Db::open(scratch.url().clone(), 1).await.unwrap();
        found.push(db.run(columns).await.unwrap());
    }
    assert_eq!(found[0], found[1], "SQLite and PostgreSQL tables differ");
    let tables: BTreeSet<&str> = found[0].iter().map(|(t, _)| t.as_str()).collect();
    for table in [
        "companies",
        "devices",
        "monitor_servers",
        "config",
        "assignments",
    ] {
        assert!(tables.contains(table), "{table} missing: {tables:?}");
    }
}

async fn migrating_an_existing_database_again_changes_nothing(backend: Backend) {
    let scratch = scratch(backend);
    let first = Db::open(scratch.url().clone(), 1).await.unwrap();
    first
        .run(|conn| db::companies::create(conn, "kept"))
        .await
        .unwrap();
    let again = Db::open(scratch.url().clone(), 1).await.unwrap();
    let names: Vec<String> = again
        .run(|conn| db::companies::list(conn, None))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["kept"]);
    let config = again.run(db::config::get).await.unwrap();
    assert_eq!(
        (config.alert_threshold, config.critical_threshold),
        (70, 90)
    );
    assert_eq!(config.balance_method, "round_robin");
    assert_eq!(config.monitor_server_current, 0);
}

async fn ownership_epochs_only_grow(backend: Backend) {
    let scratch = scratch(backend);
    let db = Db::open(scratch.url().clone(), 1).await.unwrap();
    db.run(|conn| {
        let company = db::companies::create(conn, "acme")?;
        let device = db::devices::create(
            conn,
            &NewDevice {
                company_id: company.id,
                name: "d",
                address: "http://d.test/",
                kind: "http",
                enabled: true,
                expected_status: None,
            },
        )?;
        let one = db::monitor_servers::register(conn, "10.0.0.1", 9000)?;
        let two = db::monitor_servers::register(conn, "10.0.0.2", 9000)?;
        assert_eq!(
            db::monitor_servers::register(conn, "10.0.0.1", 9000)?.id,
            one.id,
            "idempotent by address"
        );
        let d = device.id;

        assert_eq!(
            db::assignments::claim(conn, d, None, Some(one.id))?,
            Some(1),
            "the first claim inserts epoch 1"
        );
        assert_eq!(
            db::assignments::claim(conn, d, None, Some(two.id))?,
            None,
            "a second first claim loses"
        );
        assert_eq!(
            db::assignments::claim(conn, d, Some(1), Some(two.id))?,
            Some(2)
        );
        assert_eq!(
            db::assignments::claim(conn, d, Some(1), Some(one.id))?,
            None,
            "a claim from an epoch already moved on loses"
        );
        db::assignments::release(conn, d)?;
        let released = db::assignments::get(conn, d)?.unwrap();
        assert_eq!(
            (released.server_id, released.epoch),
            (None, 3),
            "release bumps the epoch"
        );
        assert_eq!(
            db::assignments::claim(conn, d, Some(3), Some(one.id))?,
            Some(4)
        );
        let owned = db::assignments::get(conn, d)?.unwrap();
        assert_eq!((owned.server_id, owned.epoch), (Some(one.id), 4));
        assert_eq!(db::assignments::monitored_in_company(conn, company.id)?, 1);
        Ok(())
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn sqlite_timestamps_in_any_form_diesel_reads_are_read() {
    let scratch = scratch(Backend::Sqlite);
    let db = Db::open(scratch.url().clone(), 2).await.unwrap();
    let (_, device) = crate::helpers::placed_device(&db, "acme", 1).await;
    // As this database writes them, with a T and a zone, without seconds, as a Julian day.
    for (stored, expected) in [
        ("'2026-12-04 10:20:30.123456'", "2026-12-04 10:20:30.123456"),
        ("'2026-12-04T10:20:30Z'", "2026-12-04 10:20:30"),
        ("'2026-12-04 10:20'", "2026-12-04 10:20:00"),
        ("2461013.5", "2025-12-04 00:00:00"),
    ] {
        let sql = format!("UPDATE devices SET updated_at = {stored} WHERE id = {device}");
        let read = db
            .run(move |conn| {
                diesel::sql_query(sql).execute(conn)?;
                db::devices::get(conn, device)
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            read.updated_at.format("%F %T%.f").to_string(),
            expected,
            "{stored}"
        );
    }
}
