//! Cache entries: a session or a remembered "not found", weighed in bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use crate::client::Session;

/// Bytes charged per entry beyond key and body: moka's bookkeeping and ours.
pub(crate) const ENTRY_OVERHEAD: u32 = 96;

/// A cached answer.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// `None`: the session did not exist when asked (a negative entry).
    pub session: Option<Arc<Session>>,
    /// When it was fetched, for the staleness bound.
    pub fetched: Instant,
}

/// The cache key: database and document id.
pub(crate) type Key = (Arc<str>, Arc<str>);

/// An entry's weight: key, body, revision and overhead, in bytes.
pub(crate) fn weigh(key: &Key, entry: &Entry) -> u32 {
    let body = entry
        .session
        .as_ref()
        .map_or(0, |s| s.body.len() + s.rev.len() + s.id.len());
    let total = key.0.len() + key.1.len() + body + ENTRY_OVERHEAD as usize;
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// Negative entries live for `negative_ttl`; sessions until evicted,
/// invalidated, or replaced.
pub(crate) struct EntryExpiry {
    pub negative_ttl: Duration,
}

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Entry, _created_at: Instant) -> Option<Duration> {
        value.session.is_none().then_some(self.negative_ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        value.session.is_none().then_some(self.negative_ttl)
    }
}
