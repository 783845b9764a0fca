//! Persisted records: bincode, each behind a format version byte so that a later
//! format can read (and migrate) an older one.

use bincode::config::{self, Configuration};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::Error;
use crate::rev::Rev;
use crate::rev_tree::RevTree;

/// The on-disk format of this build, stored under `meta/format`.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The version byte in front of every record of format 1.
const RECORD_V1: u8 = 1;

const CONFIG: Configuration = config::standard();

fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Encoding plain structs into a Vec has no failure mode.
    if let Err(e) = bincode::serde::encode_into_std_write(value, out, CONFIG) {
        unreachable!("bincode cannot fail writing to a Vec: {e}");
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<(T, usize), Error> {
    bincode::serde::decode_from_slice(bytes, CONFIG).map_err(|e| Error::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn versioned<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a [u8], Error> {
    match bytes.split_first() {
        Some((&RECORD_V1, rest)) => Ok(rest),
        Some((v, _)) => Err(Error::Corrupt {
            what,
            reason: format!("unknown record version {v}"),
        }),
        None => Err(Error::Corrupt {
            what,
            reason: "empty record".into(),
        }),
    }
}

/// A database's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DbRecord {
    pub id: u64,
    pub revs_limit: u32,
    pub expiry_field: Option<String>,
}

/// A database's counters, written in the same batch as every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DbStats {
    pub update_seq: u64,
    pub doc_count: u64,
    pub doc_del_count: u64,
}

/// The part of a document record a plain read needs, decoded without the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DocHeader {
    pub seq: u64,
    pub winner: Rev,
    pub deleted: bool,
    pub expires_at: Option<u64>,
}

/// A document's metadata: its latest sequence and revision tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DocMeta {
    pub seq: u64,
    pub tree: RevTree,
}

impl DocMeta {
    pub fn header(&self) -> Option<DocHeader> {
        let w = self.tree.winner()?;
        Some(DocHeader {
            seq: self.seq,
            winner: w.rev,
            deleted: w.deleted,
            expires_at: w.expires_at,
        })
    }
}

/// A change in the `seq` column family: enough to answer `_changes` without
/// reading the document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChangeRecord {
    pub id: String,
    /// Leaves, winner first, with their deleted flags.
    pub leaves: Vec<(Rev, bool)>,
    pub expires_at: Option<u64>,
    /// Commit time (unix milliseconds), for replication time lag.
    pub committed_ms: u64,
}

/// A `_local` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LocalRecord {
    pub rev: u64,
    pub body: Vec<u8>,
}

pub(crate) fn encode_record<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_V1];
    encode(value, &mut out);
    out
}

pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, Error> {
    Ok(decode(versioned(bytes, what)?, what)?.0)
}

pub(crate) fn encode_doc(meta: &DocMeta) -> Option<Vec<u8>> {
    let header = meta.header()?;
    let mut out = vec![RECORD_V1];
    encode(&header, &mut out);
    encode(&meta.tree, &mut out);
    Some(out)
}

pub(crate) fn decode_doc_header(bytes: &[u8]) -> Result<DocHeader, Error> {
    Ok(decode(versioned(bytes, "document")?, "document")?.0)
}

pub(crate) fn decode_doc(bytes: &[u8]) -> Result<DocMeta, Error> {
    let rest = versioned(bytes, "document")?;
    let (header, used): (DocHeader, usize) = decode(rest, "document")?;
    let (tree, _): (RevTree, usize) = decode(&rest[used..], "document")?;
    Ok(DocMeta {
        seq: header.seq,
        tree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rev_tree::LeafData;

    #[test]
    fn doc_round_trips_and_header_decodes_alone() {
        let mut tree = RevTree::new();
        tree.edit(
            None,
            LeafData {
                deleted: false,
                expires_at: Some(9),
            },
            b"{}",
            10,
        )
        .unwrap();
        let meta = DocMeta { seq: 5, tree };
        let bytes = encode_doc(&meta).unwrap();
        assert_eq!(decode_doc(&bytes).unwrap(), meta);
        let h = decode_doc_header(&bytes).unwrap();
        assert_eq!((h.seq, h.expires_at, h.deleted), (5, Some(9), false));
        assert!(decode_doc(&[9, 1, 2]).is_err());
        assert!(decode_doc(&[]).is_err());
    }
}
