//! RocksDB key layout. Nothing outside the store sees these bytes.
//!
//! Every key of a database starts with its 8-byte numeric id, so a database is a
//! contiguous range in each column family and dropping one is a range delete.
//! Integers are big-endian so that byte order is numeric order.

/// Column family names.
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_DOCS: &str = "docs";
pub(crate) const CF_BODIES: &str = "bodies";
pub(crate) const CF_SEQ: &str = "seq";
pub(crate) const CF_LOCAL: &str = "local";
pub(crate) const CF_EXPIRY: &str = "expiry";
pub(crate) const ALL_CFS: [&str; 6] = [CF_META, CF_DOCS, CF_BODIES, CF_SEQ, CF_LOCAL, CF_EXPIRY];

/// Column families whose keys start with a database id.
pub(crate) const DB_CFS: [&str; 5] = [CF_DOCS, CF_BODIES, CF_SEQ, CF_LOCAL, CF_EXPIRY];

/// `meta` keys.
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_UUID: &[u8] = b"uuid";
pub(crate) const META_NEXT_DB_ID: &[u8] = b"next_db_id";

pub(crate) fn meta_db(name: &str) -> Vec<u8> {
    [b"db/".as_slice(), name.as_bytes()].concat()
}

pub(crate) const META_DB_PREFIX: &[u8] = b"db/";

pub(crate) fn meta_stats(db: u64) -> Vec<u8> {
    [b"stats/".as_slice(), &db.to_be_bytes()].concat()
}

/// First key of a database in any per-database column family.
pub(crate) fn db_start(db: u64) -> [u8; 8] {
    db.to_be_bytes()
}

/// First key after a database.
pub(crate) fn db_end(db: u64) -> [u8; 8] {
    (db + 1).to_be_bytes()
}

pub(crate) fn doc(db: u64, id: &str) -> Vec<u8> {
    [&db.to_be_bytes(), id.as_bytes()].concat()
}

/// The document id in a `docs` (or `local`) key.
pub(crate) fn id_of_doc_key(key: &[u8]) -> Option<&str> {
    key.get(8..).and_then(|b| std::str::from_utf8(b).ok())
}

pub(crate) fn body(db: u64, id: &str, gen: u64, hash: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 4 + id.len() + 8 + hash.len());
    k.extend_from_slice(&db.to_be_bytes());
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(&gen.to_be_bytes());
    k.extend_from_slice(hash.as_bytes());
    k
}

pub(crate) fn seq(db: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&db.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number in a `seq` key.
pub(crate) fn seq_of_key(key: &[u8]) -> Option<u64> {
    key.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

pub(crate) fn expiry(db: u64, at: u64, id: &str) -> Vec<u8> {
    [&db.to_be_bytes(), &at.to_be_bytes(), id.as_bytes()].concat()
}

/// The expiry time and document id in an `expiry` key.
pub(crate) fn parse_expiry_key(key: &[u8]) -> Option<(u64, &str)> {
    let at = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    let id = std::str::from_utf8(key.get(16..)?).ok()?;
    Some((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_numerically_and_round_trip() {
        assert!(seq(1, 255) < seq(1, 256));
        assert!(seq(1, u64::MAX).as_slice() < db_end(1).as_slice());
        assert_eq!(seq_of_key(&seq(7, 42)), Some(42));
        assert!(doc(1, "zzz").as_slice() < db_end(1).as_slice());
        assert_eq!(id_of_doc_key(&doc(3, "abc")), Some("abc"));
        assert_eq!(parse_expiry_key(&expiry(2, 99, "s")), Some((99, "s")));
        assert!(expiry(2, 99, "zz") < expiry(2, 100, "a"));
    }
}
