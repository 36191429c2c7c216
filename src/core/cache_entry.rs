//! Cache entries and their lifetimes: fresh, then stale (served only when a refresh fails),
//! then expired. Expiry is checked on every read because DynamoDB's TTL deletes up to ~48 h late.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::core::account::{AccountRecord, ContactLookup};

/// How long each kind of cache entry stays fresh, and how long stale data may still be served.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheTimes {
    pub fresh: std::time::Duration,
    /// For accounts Organizations says do not exist.
    pub negative: std::time::Duration,
    /// For an account whose security contact we were not allowed to read.
    pub unknown_contact: std::time::Duration,
    /// After `fresh`, how long an entry may still enrich findings while a refresh fails.
    pub stale_grace: std::time::Duration,
    pub memory: std::time::Duration,
    pub memory_capacity: u64,
}

/// A cached lookup result with its lifetimes, in seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub record: AccountRecord,
    pub fetched_at: i64,
    /// After this the entry is refreshed before use.
    pub fresh_until: i64,
    /// After this the entry is never used; DynamoDB's TTL attribute `ExpiresAt`.
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Stale,
    Expired,
}

impl CacheEntry {
    pub fn freshness(&self, now: i64) -> Freshness {
        if now < self.fresh_until {
            Freshness::Fresh
        } else if now < self.expires_at {
            Freshness::Stale
        } else {
            Freshness::Expired
        }
    }

    /// Builds an entry for a fresh lookup. Each kind of answer lives as long as it stays true:
    /// data for `fresh`, "no such account" for `negative`, "contact unreadable" for
    /// `unknown_contact`. Up to a tenth of the lifetime is shaved off at random so that a
    /// cache warmed in one burst does not lapse in one burst.
    pub fn new(record: AccountRecord, now: i64, times: &CacheTimes, rng: &mut impl Rng) -> Self {
        let lifetime = match &record {
            AccountRecord::NotFound => times.negative,
            AccountRecord::Found(meta) if meta.security_contact == ContactLookup::Unknown => times.unknown_contact,
            AccountRecord::Found(_) => times.fresh,
        }
        .as_secs() as i64;
        let jitter = if lifetime >= 10 { rng.random_range(0..=lifetime / 10) } else { 0 };
        let fresh_until = now + lifetime - jitter;
        CacheEntry {
            record,
            fetched_at: now,
            fresh_until,
            expires_at: fresh_until + times.stale_grace.as_secs() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::account::AccountMetadata;
    use rand::SeedableRng;
    use std::time::Duration;

    fn times() -> CacheTimes {
        CacheTimes {
            fresh: Duration::from_secs(1000),
            negative: Duration::from_secs(100),
            unknown_contact: Duration::from_secs(50),
            stale_grace: Duration::from_secs(500),
            memory: Duration::from_secs(10),
            memory_capacity: 10,
        }
    }

    #[test]
    fn lifetimes_follow_the_kind_of_answer_with_bounded_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut found = AccountMetadata::from_finding_name("111122223333", Some("a"));
        found.security_contact = ContactLookup::NotSet;
        for _ in 0..100 {
            let e = CacheEntry::new(AccountRecord::Found(found.clone()), 0, &times(), &mut rng);
            assert!((900..=1000).contains(&e.fresh_until), "{}", e.fresh_until);
            assert_eq!(e.expires_at, e.fresh_until + 500);
        }
        let negative = CacheEntry::new(AccountRecord::NotFound, 0, &times(), &mut rng);
        assert!(negative.fresh_until <= 100);
        found.security_contact = ContactLookup::Unknown;
        let unknown = CacheEntry::new(AccountRecord::Found(found), 0, &times(), &mut rng);
        assert!(unknown.fresh_until <= 50);
    }

    #[test]
    fn freshness_is_checked_against_the_clock() {
        let e = CacheEntry { record: AccountRecord::NotFound, fetched_at: 0, fresh_until: 10, expires_at: 20 };
        assert_eq!(e.freshness(9), Freshness::Fresh);
        assert_eq!(e.freshness(10), Freshness::Stale);
        assert_eq!(e.freshness(20), Freshness::Expired);
    }
}
