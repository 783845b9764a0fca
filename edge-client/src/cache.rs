//! Cache entries: a session or a remembered absence, weighed in bytes, with
//! what the serving rule (`rule`) needs to judge them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::{Equivalent, Expiry};

use crate::builder::ClientBuilder;
use crate::client::Session;
use crate::rule;

/// Bytes charged per entry beyond key and body: moka's bookkeeping and ours.
pub(crate) const ENTRY_OVERHEAD: u32 = 96;

/// Why a session is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Absence {
    /// Never seen by the targets asked.
    Missing,
    /// Deleted (a tombstone): the user logged out.
    Deleted,
    /// Past its expiry.
    Expired,
}

/// An answer to a read.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    Found(Session),
    Absent(Absence),
}

/// What vouches for an entry read from the store the invalidation stream
/// follows: the stream's history and the sequence the read was served at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vouch {
    /// The stream's history the read belongs to (see `watch`).
    pub generation: u64,
    /// `GetResponse.update_seq`: every change after it is streamed.
    pub seq: u64,
}

/// A cached answer.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub answer: Answer,
    /// When the read that produced it was sent (not answered: the value may be
    /// that old).
    pub fetched: Instant,
    /// Set only when read from the invalidation stream's own store.
    pub vouch: Option<Vouch>,
}

/// The cache key: database and document id.
pub(crate) type Key = (Arc<str>, Arc<str>);

/// A [`Key`] by reference, so that a lookup allocates nothing. It hashes as the
/// key does: a tuple hashes its fields in order, and `Arc<str>` hashes as `str`.
#[derive(Hash)]
pub(crate) struct KeyRef<'a>(pub &'a str, pub &'a str);

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == &*key.0 && self.1 == &*key.1
    }
}

/// An entry's weight: key, body, revision and overhead, in bytes.
pub(crate) fn weigh(key: &Key, entry: &Entry) -> u32 {
    let body = match &entry.answer {
        Answer::Found(s) => s.body().len() + s.rev().len() + s.id().len(),
        Answer::Absent(_) => 0,
    };
    let total = key.0.len() + key.1.len() + body + ENTRY_OVERHEAD as usize;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Frees entries once no rule can serve them: absences after `negative_ttl`,
/// sessions at their expiry, and unvouched sessions after the stale-if-error
/// window. (Serving is decided by `rule::judge`, not by this.)
///
/// The lifetimes are shared with the client, which changes them when a topology
/// reload changes its settings: moka keeps the `Expiry` it was built with.
#[derive(Clone, Default)]
pub(crate) struct EntryExpiry(Arc<Lifetimes>);

#[derive(Default)]
struct Lifetimes {
    negative_ttl_ms: AtomicU64,
    unvouched_ms: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl EntryExpiry {
    /// Lifetimes for entries made from now on, from `cfg`.
    pub fn follow(&self, cfg: &ClientBuilder) {
        self.0
            .negative_ttl_ms
            .store(millis(cfg.negative_ttl), Ordering::Relaxed);
        let unvouched = cfg.max_staleness.saturating_add(cfg.stale_if_error);
        self.0.unvouched_ms.store(millis(unvouched), Ordering::Relaxed);
    }

    fn lifetime(&self, value: &Entry) -> Option<Duration> {
        let ms = |a: &AtomicU64| Duration::from_millis(a.load(Ordering::Relaxed));
        match &value.answer {
            Answer::Absent(_) => Some(ms(&self.0.negative_ttl_ms)),
            Answer::Found(s) => {
                let until_expiry = s
                    .expires_at()
                    .map(|t| Duration::from_secs(t.saturating_sub(rule::unix_now())));
                let unvouched = value.vouch.is_none().then(|| ms(&self.0.unvouched_ms));
                match (until_expiry, unvouched) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Entry, _created_at: Instant) -> Option<Duration> {
        self.lifetime(value)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.lifetime(value)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_key_by_reference_hashes_and_compares_as_the_key() {
        let hasher = std::collections::hash_map::RandomState::new();
        let key: Key = (Arc::from("sessions"), Arc::from("s1"));
        let by_ref = KeyRef("sessions", "s1");
        assert_eq!(hasher.hash_one(&key), hasher.hash_one(&by_ref));
        assert!(by_ref.equivalent(&key));
        // The split between the fields matters.
        let shifted = KeyRef("session", "ss1");
        assert_ne!(hasher.hash_one(&key), hasher.hash_one(&shifted));
        assert!(!shifted.equivalent(&key));
    }
}
