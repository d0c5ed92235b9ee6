//! [`ListCache`]: answers of the list reads (a page of devices, the monitor servers)
//! reused for a moment. A page of devices with their monitoring costs a database read
//! and its JSON, a few hundred microseconds of the coordinator's CPU for 100 devices
//! (perf on `GET /api/v1/devices`), where a bare actix-web server answers the same bytes
//! in a few; dashboards and scripts ask for the same pages again and again. An answer
//! is reused for [`FRESH_FOR`], the time the live state in it may already be old by
//! (see `live`), and forgotten at once by any write made through this coordinator's
//! API, so its callers read their own changes; a change made through another
//! coordinator, or by failover, shows within [`FRESH_FOR`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::future::{FutureExt, Shared};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::http::error::ApiError;

pub use super::live::FRESH_FOR;

/// Answers remembered at most, and their bytes: a caller walking every page of a large
/// fleet cannot make a coordinator hold more (an answer past it is not kept).
const MAX_ANSWERS: usize = 4096;
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What a list answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listing {
    /// A page of the devices of the company the caller may see (`None`: every company).
    Devices {
        company_id: Option<i64>,
        limit: i64,
        offset: i64,
    },
    /// Every monitor server with its live status (admins only).
    MonitorServers,
}

#[derive(Default)]
pub struct ListCache {
    inner: Mutex<Lists>,
}

/// An answer being made, which the requests that want the same list meanwhile await
/// instead of each reading it again (at every expiry, every connection of a busy
/// client would otherwise read the database at once).
type Pending = Shared<oneshot::Receiver<Bytes>>;

#[derive(Default)]
struct Lists {
    answers: HashMap<Listing, (Bytes, Instant)>,
    /// Bytes of `answers`.
    bytes: usize,
    /// When the oldest of `answers` was made.
    oldest: Option<Instant>,
    pending: HashMap<Listing, Pending>,
    /// Grows with every forgetting: an answer read before one is not kept.
    generation: u64,
}

/// What a request for a list is to do.
enum Recalled {
    Fresh(Bytes),
    Await(Pending),
    Make(Reading),
}

/// A list being read: where the reading began, to keep its answer only if nothing
/// was forgotten meanwhile, and whom to hand it to. Dropped unkept (the read failed),
/// it tells those waiting to read for themselves.
struct Reading {
    key: Listing,
    generation: u64,
    began: Instant,
    tell: Option<oneshot::Sender<Bytes>>,
}

impl Reading {
    /// A reading whose answer is neither kept nor shared.
    fn alone(key: Listing, began: Instant) -> Reading {
        Reading {
            key,
            generation: u64::MAX,
            began,
            tell: None,
        }
    }
}

impl ListCache {
    /// The answer for `key`: one made less than [`FRESH_FOR`] ago, the one another
    /// request is making, or one made now by `make`, kept for the requests after.
    pub async fn answer<T, F>(
        &self,
        key: Listing,
        make: impl FnOnce() -> F,
    ) -> Result<HttpResponse, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<T, ApiError>>,
    {
        let now = Instant::now();
        let reading = match self.recall(key, now) {
            Recalled::Fresh(answer) => return Ok(json(answer)),
            Recalled::Await(pending) => match pending.await {
                Ok(answer) => return Ok(json(answer)),
                // Its maker failed: this request tries for itself.
                Err(_) => Reading::alone(key, now),
            },
            Recalled::Make(reading) => reading,
        };
        let list = make().await?;
        let answer = Bytes::from(serde_json::to_vec(&list).map_err(anyhow::Error::from)?);
        self.keep(reading, answer.clone());
        Ok(json(answer))
    }

    fn recall(&self, key: Listing, now: Instant) -> Recalled {
        let Ok(mut lists) = self.inner.lock() else {
            return Recalled::Make(Reading::alone(key, now));
        };
        if let Some((answer, at)) = lists.answers.get(&key) {
            if now.saturating_duration_since(*at) < FRESH_FOR {
                return Recalled::Fresh(answer.clone());
            }
        }
        if let Some(pending) = lists.pending.get(&key) {
            // Still being made; one whose maker gave up is replaced below.
            if pending.peek().is_none() {
                return Recalled::Await(pending.clone());
            }
        }
        let (tell, told) = oneshot::channel();
        lists.pending.insert(key, told.shared());
        Recalled::Make(Reading {
            key,
            generation: lists.generation,
            began: now,
            tell: Some(tell),
        })
    }

    /// Keeps `answer`, made by `reading`, unless something was forgotten since it
    /// began (it counts as made when the reading began: its data is no newer), and
    /// hands it to the requests that awaited it.
    fn keep(&self, mut reading: Reading, answer: Bytes) {
        if let Ok(mut lists) = self.inner.lock() {
            if lists.generation == reading.generation {
                lists.pending.remove(&reading.key);
                // Answers past their time are never given again: they go as soon as
                // the oldest held is one of them.
                let began = reading.began;
                if lists
                    .oldest
                    .is_some_and(|oldest| began.saturating_duration_since(oldest) >= FRESH_FOR)
                {
                    lists
                        .answers
                        .retain(|_, (_, at)| began.saturating_duration_since(*at) < FRESH_FOR);
                    lists.bytes = lists.answers.values().map(|(a, _)| a.len()).sum();
                    lists.oldest = lists.answers.values().map(|(_, at)| *at).min();
                }
                let fits = lists.answers.len() < MAX_ANSWERS
                    && lists.bytes + answer.len() <= MAX_ANSWER_BYTES;
                if fits {
                    lists.bytes += answer.len();
                    lists.oldest = Some(lists.oldest.map_or(began, |o| o.min(began)));
                    if let Some((old, _)) =
                        lists.answers.insert(reading.key, (answer.clone(), began))
                    {
                        lists.bytes -= old.len();
                    }
                }
            }
        }
        // Those awaiting it asked before any forgetting that came since: forgetting
        // drops the pending answers, so a request after it makes its own.
        if let Some(tell) = reading.tell.take() {
            let _ = tell.send(answer);
        }
    }

    /// Forgets every answer: a change made through this coordinator shows in the next
    /// read.
    pub fn forget(&self) {
        if let Ok(mut lists) = self.inner.lock() {
            lists.answers.clear();
            lists.bytes = 0;
            lists.oldest = None;
            lists.pending.clear();
            lists.generation += 1;
        }
    }
}

/// A JSON answer of `body`.
fn json(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    const KEY: Listing = page(Some(3), 0);

    const fn page(company_id: Option<i64>, offset: i64) -> Listing {
        Listing::Devices {
            company_id,
            limit: 100,
            offset,
        }
    }

    /// The body `lists` answers for `key`, counting in `made` each time it is made.
    async fn body(lists: &ListCache, key: Listing, made: &Cell<u32>, value: u32) -> String {
        let answer = lists
            .answer(key, || async {
                made.set(made.get() + 1);
                Ok(vec![value])
            })
            .await
            .unwrap();
        let bytes = actix_web::body::to_bytes(answer.into_body()).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[actix_rt::test]
    async fn an_answer_is_reused_while_fresh_and_only_for_its_own_list() {
        let lists = ListCache::default();
        let made = Cell::new(0);
        assert_eq!(body(&lists, KEY, &made, 1).await, "[1]");
        assert_eq!(body(&lists, KEY, &made, 2).await, "[1]");
        assert_eq!(made.get(), 1);
        assert_eq!(body(&lists, page(Some(3), 100), &made, 3).await, "[3]");
        assert_eq!(body(&lists, page(None, 0), &made, 4).await, "[4]");
        assert_eq!(body(&lists, Listing::MonitorServers, &made, 5).await, "[5]");
        actix_rt::time::sleep(FRESH_FOR).await;
        assert_eq!(body(&lists, KEY, &made, 6).await, "[6]");
    }

    #[actix_rt::test]
    async fn a_write_forgets_every_answer_and_one_read_before_it_is_not_kept() {
        let lists = ListCache::default();
        let made = Cell::new(0);
        assert_eq!(body(&lists, KEY, &made, 1).await, "[1]");
        let before_the_write = match lists.recall(page(Some(3), 1), Instant::now()) {
            Recalled::Make(reading) => reading,
            _ => panic!("nothing to reuse"),
        };
        lists.forget();
        assert_eq!(body(&lists, KEY, &made, 2).await, "[2]");
        lists.keep(before_the_write, Bytes::from_static(b"[old]"));
        assert_eq!(body(&lists, page(Some(3), 1), &made, 3).await, "[3]");
    }

    #[actix_rt::test]
    async fn requests_for_a_list_being_made_await_it_and_a_failed_maker_lets_them_try() {
        let lists = ListCache::default();
        let made = Cell::new(0);
        let slow = lists.answer(KEY, || async {
            made.set(made.get() + 1);
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            Ok(vec![1])
        });
        let (first, second, third) = tokio::join!(
            slow,
            body(&lists, KEY, &made, 2),
            body(&lists, KEY, &made, 3)
        );
        assert!(first.is_ok());
        assert_eq!((second.as_str(), third.as_str()), ("[1]", "[1]"));
        assert_eq!(made.get(), 1);

        lists.forget();
        let failing = lists.answer(KEY, || async {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            Err::<Vec<u32>, _>(ApiError::Unexpected(anyhow::anyhow!(
                "the database is away"
            )))
        });
        let (failed, waiter) = tokio::join!(failing, body(&lists, KEY, &made, 4));
        assert!(failed.is_err());
        assert_eq!(waiter, "[4]");
    }

    #[actix_rt::test]
    async fn answers_past_their_time_go_and_the_bytes_held_are_bounded() {
        let lists = ListCache::default();
        let made = Cell::new(0);
        for offset in 0..10 {
            body(&lists, page(Some(3), offset), &made, 1).await;
        }
        actix_rt::time::sleep(FRESH_FOR).await;
        body(&lists, page(Some(4), 0), &made, 2).await;
        assert_eq!(
            lists.inner.lock().unwrap().answers.len(),
            1,
            "the stale ones went"
        );
        let big = "x".repeat(MAX_ANSWER_BYTES / 2);
        for offset in 10..13 {
            lists
                .answer(page(Some(3), offset), || async { Ok(big.clone()) })
                .await
                .unwrap();
        }
        let held = lists.inner.lock().unwrap();
        assert!(held.bytes <= MAX_ANSWER_BYTES, "{}", held.bytes);
        assert_eq!(
            held.bytes,
            held.answers.values().map(|(a, _)| a.len()).sum::<usize>()
        );
    }

    #[actix_rt::test]
    async fn the_cache_stays_bounded() {
        let lists = ListCache::default();
        let made = Cell::new(0);
        for offset in 0..(MAX_ANSWERS as i64 + 10) {
            body(&lists, page(Some(3), offset), &made, 0).await;
        }
        let held = lists.inner.lock().unwrap().answers.len();
        assert!(held <= MAX_ANSWERS, "{held}");
    }
}
