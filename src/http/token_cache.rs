//! API tokens this coordinator checked a moment ago, so that a request does not read the
//! database to learn who is calling. An entry is trusted for [`TTL`]; a revocation made
//! through this coordinator (a token revoked, a company deleted with its tokens) drops
//! the entries it concerns at once, and one made elsewhere (another coordinator,
//! `vigil token revoke`) takes effect here within [`TTL`]. Unknown tokens are not kept:
//! every refusal is read from the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Grant;

/// How long a checked token is trusted without reading the database again.
pub const TTL: Duration = Duration::from_secs(1);

/// Entries kept at most; past it, expired ones go, and if that is not enough, all.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<Entries>,
}

/// What a checked token stands for: its id and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub token_id: i64,
    pub grant: Grant,
}

#[derive(Default)]
struct Entries {
    /// By the token's hash (as stored in the database): the caller, and when it was read.
    by_hash: HashMap<String, (Checked, Instant)>,
    /// Counts revocations, so that a read begun before one is not kept after it.
    revocations: u64,
}

/// When a read of the database began: its time and the revocations counted then.
#[derive(Debug, Clone, Copy)]
pub struct ReadStart {
    at: Instant,
    revocations: u64,
}

impl TokenCache {
    /// The caller of the token with this hash, if it was read less than [`TTL`] ago.
    pub fn get(&self, hash: &str, now: Instant) -> Option<Checked> {
        let entries = self.entries.lock().ok()?;
        let (caller, read_at) = entries.by_hash.get(hash)?;
        (now.saturating_duration_since(*read_at) < TTL).then_some(*caller)
    }

    /// Marks the start of a read of the database, for [`Self::put`].
    pub fn read_start(&self, now: Instant) -> ReadStart {
        let revocations = self.entries.lock().map_or(0, |e| e.revocations);
        ReadStart {
            at: now,
            revocations,
        }
    }

    /// Keeps a caller read from the database by a read begun at `read`, unless a
    /// revocation happened here since (the read may predate it).
    pub fn put(&self, hash: String, checked: Checked, read: ReadStart) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.revocations != read.revocations {
            return;
        }
        let now = read.at;
        let by_hash = &mut entries.by_hash;
        if by_hash.len() >= MAX_ENTRIES && !by_hash.contains_key(&hash) {
            by_hash.retain(|_, (_, read_at)| now.saturating_duration_since(*read_at) < TTL);
            if by_hash.len() >= MAX_ENTRIES {
                by_hash.clear();
            }
        }
        by_hash.insert(hash, (checked, now));
    }

    /// Drops the token with this id (it was revoked here).
    pub fn forget_token(&self, token_id: i64) {
        self.forget(|checked| checked.token_id == token_id);
    }

    /// Drops every token of this company (it was deleted here, its tokens with it).
    pub fn forget_company(&self, company_id: i64) {
        self.forget(|checked| checked.grant.company_id() == Some(company_id));
    }

    fn forget(&self, concerned: impl Fn(&Checked) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.revocations += 1;
            entries
                .by_hash
                .retain(|_, (checked, _)| !concerned(checked));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn caller(token_id: i64, company: Option<i64>) -> Checked {
        let role = if company.is_some() {
            Role::Operator
        } else {
            Role::Admin
        };
        Checked {
            token_id,
            grant: Grant::new(role, company).unwrap(),
        }
    }

    #[test]
    fn an_entry_is_trusted_for_the_ttl_only() {
        let cache = TokenCache::default();
        let now = Instant::now();
        cache.put("h1".into(), caller(1, None), cache.read_start(now));
        assert_eq!(cache.get("h1", now), Some(caller(1, None)));
        assert_eq!(
            cache.get("h1", now + TTL - Duration::from_millis(1)),
            Some(caller(1, None))
        );
        assert_eq!(cache.get("h1", now + TTL), None);
        assert_eq!(cache.get("h2", now), None);
    }

    #[test]
    fn revoking_a_token_or_deleting_a_company_drops_its_entries() {
        let cache = TokenCache::default();
        let now = Instant::now();
        cache.put("admin".into(), caller(1, None), cache.read_start(now));
        cache.put("a".into(), caller(2, Some(10)), cache.read_start(now));
        cache.put("a2".into(), caller(3, Some(10)), cache.read_start(now));
        cache.put("b".into(), caller(4, Some(20)), cache.read_start(now));
        cache.forget_token(4);
        assert_eq!(cache.get("b", now), None);
        cache.forget_company(10);
        assert_eq!(cache.get("a", now), None);
        assert_eq!(cache.get("a2", now), None);
        assert_eq!(cache.get("admin", now), Some(caller(1, None)));
    }

    #[test]
    fn a_read_begun_before_a_revocation_is_not_kept() {
        let cache = TokenCache::default();
        let now = Instant::now();
        let read = cache.read_start(now);
        cache.forget_token(7);
        cache.put("h".into(), caller(7, None), read);
        assert_eq!(cache.get("h", now), None);
        // A read begun after it is kept.
        cache.put("h".into(), caller(7, None), cache.read_start(now));
        assert_eq!(cache.get("h", now), Some(caller(7, None)));
    }

    #[test]
    fn a_full_cache_makes_room_without_growing() {
        let cache = TokenCache::default();
        let start = Instant::now();
        for n in 0..MAX_ENTRIES {
            cache.put(
                format!("old{n}"),
                caller(n as i64, None),
                cache.read_start(start),
            );
        }
        // The old entries have expired: they make room for the new one.
        let later = start + TTL;
        cache.put("new".into(), caller(-1, None), cache.read_start(later));
        assert_eq!(cache.get("new", later), Some(caller(-1, None)));
        assert_eq!(cache.entries.lock().unwrap().by_hash.len(), 1);
        // None expired: the cache starts over rather than grow past its bound.
        for n in 1..MAX_ENTRIES {
            cache.put(
                format!("fresh{n}"),
                caller(n as i64, None),
                cache.read_start(later),
            );
        }
        assert_eq!(cache.entries.lock().unwrap().by_hash.len(), MAX_ENTRIES);
        cache.put("one more".into(), caller(-2, None), cache.read_start(later));
        assert_eq!(cache.entries.lock().unwrap().by_hash.len(), 1);
        assert_eq!(cache.get("one more", later), Some(caller(-2, None)));
    }
}
