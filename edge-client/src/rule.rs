//! The serving rule, in one place: whether a cached entry may be served, and
//! whether a fetched session may be served and cached at all. The crate docs
//! state the rule; this module is its only implementation.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::builder::ClientBuilder;
use crate::cache::{Absence, Answer, Entry};
use crate::client::Session;
use crate::token::ReadToken;
use crate::watch::WatchState;

/// What may be done with a cached entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it.
    Serve,
    /// Refetch; serve it (marked stale) only if every target is unreachable.
    StaleIfError,
    /// Refetch; never serve it.
    Refetch,
}

/// This host's clock in unix seconds, the unit of session expiry.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `s` has expired at `now` (unix seconds): the store's own rule.
pub(crate) fn expired(s: &Session, now: u64) -> bool {
    s.expires_at().is_some_and(|t| t <= now)
}

/// The generation of a revision `N-hash` (0 if unparsable: older than anything).
pub(crate) fn generation(rev: &str) -> u64 {
    rev.split_once('-').and_then(|(n, _)| n.parse().ok()).unwrap_or(0)
}

/// Judges a cached entry at `at`. `stream` is the database's invalidation stream,
/// if any; `unix_now` is [`unix_now`], asked only for a session that expires (the
/// hit path reads the clock as little as it can).
pub(crate) fn judge(
    entry: &Entry,
    stream: Option<&WatchState>,
    cfg: &ClientBuilder,
    at: Instant,
    unix_now: impl FnOnce() -> u64,
) -> Verdict {
    let age = at.saturating_duration_since(entry.fetched);
    match &entry.answer {
        // Never past the session's expiry.
        Answer::Found(s) if s.expires_at().is_some() && expired(s, unix_now()) => return Verdict::Refetch,
        Answer::Found(_) => {}
        // Absences are remembered briefly and never served stale.
        Answer::Absent(_) if age < cfg.negative_ttl => return Verdict::Serve,
        Answer::Absent(_) => return Verdict::Refetch,
    }
    // Vouched: read from the stream's own store at a sequence the stream covers;
    // any later change of the key would have evicted it.
    if let (Some(v), Some(w)) = (entry.vouch, stream) {
        if w.vouches(v, cfg.watch_silence, at) {
            return Verdict::Serve;
        }
    }
    if age < cfg.max_staleness {
        Verdict::Serve
    } else if age < cfg.max_staleness.saturating_add(cfg.stale_if_error) {
        Verdict::StaleIfError
    } else {
        Verdict::Refetch
    }
}

/// Whether a session just read may be served: not expired, and not older than a
/// delete this client has seen (`deleted_at`: the generation of that
/// tombstone). A session recreated after the delete has a higher generation.
pub(crate) fn admit(s: &Session, deleted_at: Option<u64>, now: u64) -> Result<(), Absence> {
    if expired(s, now) {
        return Err(Absence::Expired);
    }
    if deleted_at.is_some_and(|g| generation(s.rev()) <= g) {
        return Err(Absence::Deleted);
    }
    Ok(())
}

/// Whether `answer` is at least as new as the write `token` stands for: that
/// revision or a later generation, or, for a delete, the session gone (deleted or
/// expired). A "missing" never is (the write has not arrived), nor is an
/// "expired" for a put (the write may have extended the expiry of an older copy).
pub(crate) fn meets(answer: &Answer, token: &ReadToken) -> bool {
    match answer {
        Answer::Found(s) => s.rev() == token.rev() || generation(s.rev()) > token.generation(),
        Answer::Absent(Absence::Deleted | Absence::Expired) => token.is_delete(),
        Answer::Absent(Absence::Missing) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn session(rev: &str, expires_at: Option<u64>) -> Session {
        Session::new(
            "s".into(),
            rev.into(),
            bytes::Bytes::from_static(b"{}"),
            expires_at,
        )
    }

    fn entry(s: Session, age: Duration) -> Entry {
        Entry {
            answer: Answer::Found(s),
            fetched: Instant::now() - age,
            vouch: None,
        }
    }

    #[test]
    fn a_token_is_met_by_its_revision_or_a_later_one_and_a_delete_by_gone() {
        let put = ReadToken::written("3-b").unwrap();
        let found = |rev| Answer::Found(session(rev, None));
        assert!(meets(&found("3-b"), &put));
        assert!(meets(&found("4-a"), &put));
        assert!(
            !meets(&found("3-a"), &put),
            "a conflicting sibling is not the write"
        );
        assert!(!meets(&found("2-z"), &put));
        for absence in [Absence::Missing, Absence::Deleted, Absence::Expired] {
            assert!(!meets(&Answer::Absent(absence), &put), "{absence:?} met a put");
        }
        let del = ReadToken::deleted("4-c").unwrap();
        assert!(meets(&Answer::Absent(Absence::Deleted), &del));
        assert!(meets(&Answer::Absent(Absence::Expired), &del));
        assert!(!meets(&Answer::Absent(Absence::Missing), &del));
        assert!(!meets(&found("3-b"), &del), "the copy before the delete");
        assert!(meets(&found("5-a"), &del), "re-created after the delete");
    }

    #[test]
    fn unvouched_entries_age_through_fresh_stale_and_gone() {
        let cfg = ClientBuilder::default()
            .max_staleness(Duration::from_secs(2))
            .stale_if_error(Duration::from_secs(5));
        let now = unix_now();
        let at = |secs| {
            judge(
                &entry(session("1-a", None), Duration::from_secs(secs)),
                None,
                &cfg,
                Instant::now(),
                || now,
            )
        };
        assert_eq!(at(1), Verdict::Serve);
        assert_eq!(at(3), Verdict::StaleIfError);
        assert_eq!(at(8), Verdict::Refetch);
    }

    #[test]
    fn never_past_expiry_even_when_young() {
        let cfg = ClientBuilder::default();
        let now = unix_now();
        let e = entry(session("1-a", Some(now)), Duration::ZERO);
        assert_eq!(judge(&e, None, &cfg, Instant::now(), || now), Verdict::Refetch);
        let e = entry(session("1-a", Some(now + 60)), Duration::ZERO);
        assert_eq!(judge(&e, None, &cfg, Instant::now(), || now), Verdict::Serve);
    }

    #[test]
    fn a_seen_delete_hides_older_copies_but_not_a_recreation() {
        let now = unix_now();
        assert_eq!(admit(&session("2-a", None), Some(3), now), Err(Absence::Deleted));
        assert_eq!(admit(&session("3-a", None), Some(3), now), Err(Absence::Deleted));
        assert_eq!(admit(&session("4-b", None), Some(3), now), Ok(()));
        assert_eq!(
            admit(&session("1-a", Some(now - 1)), None, now),
            Err(Absence::Expired)
        );
        assert_eq!(generation("12-abc"), 12);
        assert_eq!(generation("junk"), 0);
    }
}
