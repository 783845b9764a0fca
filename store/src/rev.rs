//! Revision ids: `N-hash`, deterministic from the edit they name.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest revision hash accepted from a peer. CouchDB and PouchDB use 32 hex digits.
const MAX_HASH_LEN: usize = 64;

/// A revision id, `generation-hash`, as in CouchDB.
///
/// Ordering is CouchDB's: by generation, then by hash compared bytewise, which is
/// what the winner rule needs once deletedness is equal.
///
/// ```
/// use store::Rev;
/// let rev: Rev = "2-7051cbe5c8faecd085a3fa619e6e6337".parse().unwrap();
/// assert_eq!(rev.generation(), 2);
/// assert_eq!(rev.to_string(), "2-7051cbe5c8faecd085a3fa619e6e6337");
/// assert!("2-".parse::<Rev>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rev {
    gen: u64,
    hash: Box<str>,
}

impl Rev {
    /// A revision from its parts; the hash must be 1 to 64 ASCII letters or digits.
    pub fn new(gen: u64, hash: &str) -> Result<Rev, Error> {
        if gen == 0 {
            return Err(Error::InvalidRev {
                rev: format!("{gen}-{hash}"),
                reason: "generation must be at least 1",
            });
        }
        if hash.is_empty() || hash.len() > MAX_HASH_LEN || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::InvalidRev {
                rev: format!("{gen}-{hash}"),
                reason: "hash must be 1 to 64 ASCII letters or digits",
            });
        }
        Ok(Rev {
            gen,
            hash: hash.into(),
        })
    }

    /// The revision an edit produces: generation one past its parent, and a hash of
    /// the parent, the deleted flag and the body. The same edit of the same parent
    /// gives the same revision on every node, so a retried write is idempotent.
    pub fn for_edit(parent: Option<&Rev>, deleted: bool, body: &[u8]) -> Rev {
        let mut md5 = Md5::new();
        match parent {
            Some(p) => {
                md5.update(p.gen.to_be_bytes());
                md5.update(p.hash.as_bytes());
            }
            None => md5.update([0u8; 8]),
        }
        md5.update([u8::from(deleted)]);
        md5.update(body);
        Rev {
            gen: parent.map_or(1, |p| p.gen + 1),
            hash: hex::encode(md5.finalize()).into(),
        }
    }

    /// The generation: how many edits lead to this revision.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// The hash part, after the dash.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

impl Ord for Rev {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gen
            .cmp(&other.gen)
            .then_with(|| self.hash.as_bytes().cmp(other.hash.as_bytes()))
    }
}

impl PartialOrd for Rev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for Rev {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rev, Error> {
        let invalid = |reason| Error::InvalidRev {
            rev: s.chars().take(100).collect(),
            reason,
        };
        let (gen, hash) = s.split_once('-').ok_or_else(|| invalid("expected N-hash"))?;
        if gen.is_empty() || gen.len() > 19 || !gen.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("generation must be a positive integer"));
        }
        let gen: u64 = gen
            .parse()
            .map_err(|_| invalid("generation must be a positive integer"))?;
        Rev::new(gen, hash)
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.gen, self.hash)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let r: Rev = "10-abc".parse().unwrap();
        assert_eq!(r.generation(), 10);
        assert_eq!(r.hash(), "abc");
        assert_eq!(r.to_string(), "10-abc");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "-a",
            "1-",
            "0-abc",
            "x-abc",
            "1-ab c",
            "1-ab-c",
            "+1-a",
            "99999999999999999999-a",
        ] {
            assert!(bad.parse::<Rev>().is_err(), "{bad:?} parsed");
        }
        let long = format!("1-{}", "a".repeat(65));
        assert!(long.parse::<Rev>().is_err());
    }

    #[test]
    fn orders_by_generation_then_hash_bytes() {
        let a: Rev = "2-a".parse().unwrap();
        let b: Rev = "2-b".parse().unwrap();
        let c: Rev = "10-a".parse().unwrap();
        let upper: Rev = "2-B".parse().unwrap();
        assert!(a < b && b < c);
        assert!(upper < a, "bytewise: 'B' < 'a'");
    }

    #[test]
    fn edits_are_deterministic() {
        let p: Rev = "1-abc".parse().unwrap();
        let x = Rev::for_edit(Some(&p), false, b"{\"a\":1}");
        let y = Rev::for_edit(Some(&p), false, b"{\"a\":1}");
        assert_eq!(x, y);
        assert_eq!(x.generation(), 2);
        assert_eq!(x.hash().len(), 32);
        assert_ne!(x, Rev::for_edit(Some(&p), true, b"{\"a\":1}"));
        assert_ne!(x, Rev::for_edit(Some(&p), false, b"{\"a\":2}"));
        assert_ne!(x, Rev::for_edit(None, false, b"{\"a\":1}"));
        assert_eq!(Rev::for_edit(None, false, b"{}").generation(), 1);
    }
}
