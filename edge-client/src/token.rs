//! Read-your-writes tokens: the revision a write created, carried by the app to
//! later reads (wherever the user roams) so that they never answer with an older one.

use std::fmt;

use crate::error::ClientError;

/// What a write returns for read-your-writes: the revision it created, and whether
/// that revision is a delete. Give it to [`crate::Client::read_after`]: the answer is
/// that revision or a later one, never an older one.
///
/// Its text form ([`fmt::Display`], [`ReadToken::parse`]) is what an app carries,
/// e.g. in its own session cookie beside the session id: `N-hash` for a write,
/// `N-hash/deleted` for a delete. It holds no secret (a revision is not a
/// credential), but it is only a hint about one session: check it belongs to the
/// session being read.
///
/// ```
/// # use edge_client::ReadToken;
/// let t = ReadToken::written("3-a1b2").unwrap();
/// assert_eq!(ReadToken::parse(&t.to_string()).unwrap(), t);
/// assert!(ReadToken::parse("not-a-rev").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadToken {
    rev: String,
    generation: u64,
    deleted: bool,
}

const DELETED_SUFFIX: &str = "/deleted";

impl ReadToken {
    /// The token of a put that created `rev` ([`crate::Client::put`]'s answer).
    pub fn written(rev: &str) -> Result<ReadToken, ClientError> {
        ReadToken::new(rev, false)
    }

    /// The token of a delete that created tombstone `rev` ([`crate::Client::delete`]'s answer).
    pub fn deleted(rev: &str) -> Result<ReadToken, ClientError> {
        ReadToken::new(rev, true)
    }

    /// Reads a token's text form.
    pub fn parse(text: &str) -> Result<ReadToken, ClientError> {
        match text.strip_suffix(DELETED_SUFFIX) {
            Some(rev) => ReadToken::deleted(rev),
            None => ReadToken::written(text),
        }
    }

    fn new(rev: &str, deleted: bool) -> Result<ReadToken, ClientError> {
        let bad = || ClientError::Config(format!("read token {rev:?}: expected a revision N-hash"));
        let (n, hash) = rev.split_once('-').ok_or_else(bad)?;
        let generation: u64 = n.parse().map_err(|_| bad())?;
        if generation == 0 || hash.is_empty() || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        Ok(ReadToken {
            rev: rev.to_owned(),
            generation,
            deleted,
        })
    }

    /// The revision.
    pub fn rev(&self) -> &str {
        &self.rev
    }

    /// Its generation (`N` of `N-hash`).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the write was a delete.
    pub fn is_delete(&self) -> bool {
        self.deleted
    }
}

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rev)?;
        if self.deleted {
            f.write_str(DELETED_SUFFIX)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let d = ReadToken::deleted("7-ff").unwrap();
        assert_eq!(d.to_string(), "7-ff/deleted");
        assert_eq!(ReadToken::parse("7-ff/deleted").unwrap(), d);
        assert!(d.is_delete());
        assert_eq!(d.generation(), 7);
        for bad in ["", "7", "-ff", "0-ff", "x-ff", "7-", "7-f f", "7-ff/gone"] {
            assert!(ReadToken::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
