//! Many claims in one statement (`db::claims::claim_many`), on a real database: each
//! claim wins only at the epoch it read, a device with no assignment is inserted once,
//! and the answers come back in the order asked.

use vigil::db::{self, Db};

use crate::helpers::{place, placed_device, scratch, Backend};

crate::on_both_backends!(claims_in_one_statement_win_only_at_the_epoch_they_read,);

async fn claims_in_one_statement_win_only_at_the_epoch_they_read(backend: Backend) {
    let scratch = scratch(backend);
    let db = Db::open(scratch.url().clone(), 2).await.unwrap();
    let server = db
        .run(|conn| db::monitor_servers::register(conn, "127.0.0.1", 9))
        .await
        .unwrap()
        .id;
    let (_, at_three) = placed_device(&db, "at-three", 3).await;
    let (_, moved_on) = placed_device(&db, "moved-on", 5).await;
    let (_, fresh) = placed_device(&db, "fresh", 1).await;
    let (_, taken) = placed_device(&db, "taken", 1).await;
    // `fresh` and `taken` have no assignment yet; `taken` gets one before the claim.
    for device in [fresh, taken] {
        db.run(move |conn| {
            use diesel::prelude::*;
            use vigil::db::schema::assignments;
            diesel::delete(assignments::table.find(device)).execute(conn)
        })
        .await
        .unwrap();
    }
    place(&db, taken, 7).await;

    let claims = vec![
        (at_three, Some(3), Some(server)),
        (moved_on, Some(4), Some(server)),
        (fresh, None, Some(server)),
        (taken, None, Some(server)),
    ];
    let answered = db
        .run(move |conn| db::write_transaction(conn, |conn| db::claims::claim_many(conn, &claims)))
        .await
        .unwrap();
    assert_eq!(answered, vec![Some(4), None, Some(1), None]);

    let owner = |device: i64| {
        let db = db.clone();
        async move {
            let a = db
                .run(move |conn| db::assignments::get(conn, device))
                .await
                .unwrap()
                .unwrap();
            (a.server_id, a.epoch)
        }
    };
    assert_eq!(owner(at_three).await, (Some(server), 4));
    assert_eq!(
        owner(moved_on).await,
        (None, 5),
        "a lost claim changes nothing"
    );
    assert_eq!(owner(fresh).await, (Some(server), 1));
    assert_eq!(
        owner(taken).await,
        (None, 7),
        "a lost insert changes nothing"
    );

    // A release is a claim for no server.
    let release = vec![(at_three, Some(4), None)];
    let released = db
        .run(move |conn| db::claims::claim_many(conn, &release))
        .await
        .unwrap();
    assert_eq!(released, vec![Some(5)]);
    assert_eq!(owner(at_three).await, (None, 5));
}
