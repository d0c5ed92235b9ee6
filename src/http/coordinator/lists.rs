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
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::header::ContentType;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::http::error::ApiError;

pub use super::live::FRESH_FOR;

/// Answers remembered at most; past it, stale ones go, and if that is not enough, all.
const MAX_ANSWERS: usize = 4096;

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

#[derive(Default)]
struct Lists {
    answers: HashMap<Listing, (Bytes, Instant)>,
    /// Grows with every forgetting: an answer read before one is not kept.
    generation: u64,
}

/// A list being read: where the reading began, to keep its answer only if nothing
/// was forgotten meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    key: Listing,
    generation: u64,
    began: Instant,
}

impl ListCache {
    /// The answer for `key` if one is fresh at `now`; otherwise the reading to hand
    /// back to [`ListCache::keep`] with the answer made.
    pub fn recall(&self, key: Listing, now: Instant) -> Result<Bytes, Reading> {
        let Ok(lists) = self.inner.lock() else {
            return Err(Reading {
                key,
                generation: u64::MAX,
                began: now,
            });
        };
        match lists.answers.get(&key) {
            Some((answer, at)) if now.saturating_duration_since(*at) < FRESH_FOR => {
                Ok(answer.clone())
            }
            _ => Err(Reading {
                key,
                generation: lists.generation,
                began: now,
            }),
        }
    }

    /// The answer `reading` made of `list`, kept (see [`ListCache::keep_bytes`]).
    pub fn keep(&self, reading: Reading, list: &impl Serialize) -> Result<HttpResponse, ApiError> {
        let answer = Bytes::from(serde_json::to_vec(list).map_err(anyhow::Error::from)?);
        self.keep_bytes(reading, answer.clone());
        Ok(json(answer))
    }

    /// Keeps `answer`, made by `reading`, unless something was forgotten since it
    /// began. It counts as made when the reading began: its data is no newer.
    fn keep_bytes(&self, reading: Reading, answer: Bytes) {
        let Ok(mut lists) = self.inner.lock() else {
            return;
        };
        if lists.generation != reading.generation {
            return;
        }
        if lists.answers.len() >= MAX_ANSWERS {
            lists
                .answers
                .retain(|_, (_, at)| reading.began.saturating_duration_since(*at) < FRESH_FOR);
            if lists.answers.len() >= MAX_ANSWERS {
                lists.answers.clear();
            }
        }
        lists.answers.insert(reading.key, (answer, reading.began));
    }

    /// Forgets every answer: a change made through this coordinator shows in the next
    /// read.
    pub fn forget(&self) {
        if let Ok(mut lists) = self.inner.lock() {
            lists.answers.clear();
            lists.generation += 1;
        }
    }
}

/// A JSON answer of `body`.
pub fn json(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Listing = page(Some(3), 0);

    const fn page(company_id: Option<i64>, offset: i64) -> Listing {
        Listing::Devices {
            company_id,
            limit: 100,
            offset,
        }
    }

    #[test]
    fn an_answer_is_reused_while_fresh_and_only_for_its_own_page() {
        let lists = ListCache::default();
        let start = Instant::now();
        let reading = lists.recall(KEY, start).unwrap_err();
        lists.keep_bytes(reading, Bytes::from_static(b"[1]"));
        assert_eq!(lists.recall(KEY, start + FRESH_FOR / 2).unwrap(), "[1]");
        assert!(lists.recall(page(Some(3), 100), start).is_err());
        assert!(lists.recall(page(None, 0), start).is_err());
        assert!(lists.recall(Listing::MonitorServers, start).is_err());
        assert!(lists.recall(KEY, start + FRESH_FOR).is_err());
    }

    #[test]
    fn a_write_forgets_every_answer_and_one_read_before_it_is_not_kept() {
        let lists = ListCache::default();
        let start = Instant::now();
        let reading = lists.recall(KEY, start).unwrap_err();
        lists.keep_bytes(reading, Bytes::from_static(b"[1]"));
        let before_the_write = lists.recall(page(Some(3), 1), start).unwrap_err();
        lists.forget();
        assert!(lists.recall(KEY, start).is_err());
        lists.keep_bytes(before_the_write, Bytes::from_static(b"[old]"));
        assert!(lists.recall(page(Some(3), 1), start).is_err());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let lists = ListCache::default();
        let start = Instant::now();
        for offset in 0..(MAX_ANSWERS as i64 + 10) {
            let key = page(Some(3), offset);
            let reading = lists.recall(key, start).unwrap_err();
            lists.keep_bytes(reading, Bytes::from_static(b"[]"));
        }
        let held = lists.inner.lock().unwrap().answers.len();
        assert!(held <= MAX_ANSWERS, "{held}");
    }
}
