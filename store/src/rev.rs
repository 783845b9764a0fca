//! Revision ids: `N-hash`, deterministic from the edit they name.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest revision hash accepted from a peer. CouchDB and PouchDB use 32 hex digits.
const MAX_HASH_LEN: usize = 64;

/// The highest generation accepted anywhere: from a `_rev`, a `_revisions.start`,
/// a peer, or made by an edit. It is JavaScript's largest exact integer, so
/// everything PouchDB and CouchDB produce fits, every node can parse and print
/// it, and `generation + window` arithmetic never overflows.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// A revision id, `generation-hash`, as in CouchDB.
///
/// Ordering is CouchDB's: by generation, then by hash as CouchDB stores it — a
/// 32-digit hex hash as its 16 bytes, any other hash as its bytes — compared
/// bytewise, so a mixed fleet picks the same winner once deletedness is equal.
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
    /// A revision from its parts; the generation must be 1 to [`MAX_GENERATION`],
    /// the hash 1 to 64 ASCII letters or digits.
    pub fn new(gen: u64, hash: &str) -> Result<Rev, Error> {
        if gen == 0 {
            return Err(Error::InvalidRev {
                rev: format!("{gen}-{}", truncated(hash)),
                reason: "generation must be at least 1",
            });
        }
        if gen > MAX_GENERATION {
            return Err(Error::InvalidRev {
                rev: format!("{gen}-{}", truncated(hash)),
                reason: "generation exceeds 9007199254740991",
            });
        }
        if hash.is_empty() || hash.len() > MAX_HASH_LEN || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::InvalidRev {
                rev: format!("{gen}-{}", truncated(hash)),
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
    /// Fails only when the parent is at [`MAX_GENERATION`].
    pub fn for_edit(parent: Option<&Rev>, deleted: bool, body: &[u8]) -> Result<Rev, Error> {
        let gen = match parent {
            None => 1,
            Some(p) => p
                .gen
                .checked_add(1)
                .filter(|g| *g <= MAX_GENERATION)
                .ok_or_else(|| Error::InvalidRev {
                    rev: p.to_string(),
                    reason: "the revision is at the highest generation and cannot be edited",
                })?,
        };
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
        Ok(Rev {
            gen,
            hash: hex::encode(md5.finalize()).into(),
        })
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

/// A hash as CouchDB keeps it: 32 hex digits (either case) as 16 bytes, anything
/// else as its bytes (`couch_doc:parse_revid`).
enum HashKey<'a> {
    Binary([u8; 16]),
    Text(&'a [u8]),
}

impl HashKey<'_> {
    fn of(hash: &str) -> HashKey<'_> {
        let mut out = [0u8; 16];
        if hash.len() == 32 && hex::decode_to_slice(hash, &mut out).is_ok() {
            HashKey::Binary(out)
        } else {
            HashKey::Text(hash.as_bytes())
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            HashKey::Binary(b) => b,
            HashKey::Text(t) => t,
        }
    }
}

impl Ord for Rev {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gen.cmp(&other.gen).then_with(|| {
            let (a, b) = (HashKey::of(&self.hash), HashKey::of(&other.hash));
            // Equal keys from different spellings (upper and lower case) still
            // need a total order consistent with Eq.
            a.bytes()
                .cmp(b.bytes())
                .then_with(|| self.hash.as_bytes().cmp(other.hash.as_bytes()))
        })
    }
}

fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
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
    fn orders_hashes_as_couchdb_stores_them() {
        // 32 hex digits compare as 16 bytes, whatever their case: as strings
        // "a…" > "B…", as CouchDB's binaries 0xa0… < 0xb0….
        let lower: Rev = format!("2-a{}", "0".repeat(31)).parse().unwrap();
        let upper: Rev = format!("2-B{}", "0".repeat(31)).parse().unwrap();
        assert!(lower < upper);
        // A hex hash (16 bytes, first byte 0xff) against a short text hash "z"
        // (one byte, 0x7a): CouchDB compares the binaries bytewise.
        let hex: Rev = format!("2-ff{}", "0".repeat(30)).parse().unwrap();
        let text: Rev = "2-z".parse().unwrap();
        assert!(text < hex);
        // Non-hex 32-character hashes stay text.
        let word: Rev = format!("2-{}", "g".repeat(32)).parse().unwrap();
        assert!(word < hex, "text 'g' (0x67) sorts before the binary 0xff…");
    }

    #[test]
    fn one_generation_bound_everywhere() {
        let top = format!("{MAX_GENERATION}-a");
        let rev: Rev = top.parse().unwrap();
        assert_eq!(rev.generation(), MAX_GENERATION);
        assert!(format!("{}-a", MAX_GENERATION + 1).parse::<Rev>().is_err());
        assert!("10000000000000000000-a".parse::<Rev>().is_err());
        assert!(Rev::new(u64::MAX, "a").is_err());
        assert!(
            Rev::for_edit(Some(&rev), false, b"{}").is_err(),
            "no generation past the bound"
        );
        let below = Rev::new(MAX_GENERATION - 1, "a").unwrap();
        assert_eq!(
            Rev::for_edit(Some(&below), false, b"{}").unwrap().generation(),
            MAX_GENERATION
        );
    }

    #[test]
    fn edits_are_deterministic() {
        let p: Rev = "1-abc".parse().unwrap();
        let x = Rev::for_edit(Some(&p), false, b"{\"a\":1}").unwrap();
        let y = Rev::for_edit(Some(&p), false, b"{\"a\":1}").unwrap();
        assert_eq!(x, y);
        assert_eq!(x.generation(), 2);
        assert_eq!(x.hash().len(), 32);
        assert_ne!(x, Rev::for_edit(Some(&p), true, b"{\"a\":1}").unwrap());
        assert_ne!(x, Rev::for_edit(Some(&p), false, b"{\"a\":2}").unwrap());
        assert_ne!(x, Rev::for_edit(None, false, b"{\"a\":1}").unwrap());
        assert_eq!(Rev::for_edit(None, false, b"{}").unwrap().generation(), 1);
    }
}
