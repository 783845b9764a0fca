//! Documents as JSON: parsing what clients send, rendering what they read.
//!
//! A body is kept as the bytes received, minus the special `_` members, so it is
//! served without re-encoding. Top-level members are re-joined without whitespace,
//! which makes the stored body (and so the revision hash) canonical for a given input.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::Error;
use crate::names::DocId;
use crate::rev::{Rev, MAX_GENERATION};

/// A document as a client sent it, split into its special members and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocInput {
    /// `_id`, if present (validation is the caller's: it may be `_local/...`).
    pub id: Option<String>,
    /// `_rev`, if present.
    pub rev: Option<Rev>,
    /// `_deleted: true`.
    pub deleted: bool,
    /// The revision path from `_revisions`, newest first, if present.
    pub revisions: Option<Vec<Rev>>,
    /// The canonical body: a JSON object without special members.
    pub body: Vec<u8>,
}

/// A `_local` document as a client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInput {
    /// `_rev` as sent (`0-N`), if present.
    pub rev: Option<String>,
    /// `_deleted: true`.
    pub deleted: bool,
    /// The canonical body without special members.
    pub body: Vec<u8>,
}

/// Members CouchDB accepts on input and ignores: they are outputs of reads.
const IGNORED_SPECIALS: &[&str] = &["_conflicts", "_deleted_conflicts", "_local_seq", "_revs_info"];

impl DocInput {
    /// Parses a document sent by a client.
    ///
    /// ```
    /// use store::DocInput;
    /// let doc = DocInput::parse(br#"{"_id":"s1", "user": "ada", "n": [1, 2]}"#, 1 << 20).unwrap();
    /// assert_eq!(doc.id.as_deref(), Some("s1"));
    /// assert_eq!(doc.body, br#"{"user":"ada","n":[1, 2]}"#);
    /// assert!(DocInput::parse(b"[1]", 1 << 20).is_err());
    /// ```
    pub fn parse(json: &[u8], max_size: usize) -> Result<DocInput, Error> {
        if json.len() > max_size {
            return Err(Error::DocumentTooLarge {
                size: json.len(),
                limit: max_size,
            });
        }
        let text = std::str::from_utf8(json).map_err(|e| Error::InvalidDocument {
            reason: format!("body is not valid UTF-8: {e}"),
        })?;
        let members = parse_members(text)?;
        check_strict(text)?;
        DocInput::from_members(members)
    }

    /// Parses a `_local` document: its `_rev` is `0-N`, kept as the raw string.
    ///
    /// ```
    /// use store::DocInput;
    /// let l = DocInput::parse_local(br#"{"_id":"_local/x","_rev":"0-3","seq":7}"#, 1024).unwrap();
    /// assert_eq!(l.rev.as_deref(), Some("0-3"));
    /// assert_eq!(l.body, br#"{"seq":7}"#);
    /// ```
    pub fn parse_local(json: &[u8], max_size: usize) -> Result<LocalInput, Error> {
        if json.len() > max_size {
            return Err(Error::DocumentTooLarge {
                size: json.len(),
                limit: max_size,
            });
        }
        let text = std::str::from_utf8(json).map_err(|e| Error::InvalidDocument {
            reason: format!("body is not valid UTF-8: {e}"),
        })?;
        let mut members = parse_members(text)?;
        let mut rev = None;
        let mut deleted = false;
        let mut special = Vec::new();
        members.retain(|(k, v)| match k.as_str() {
            "_rev" => {
                special.push(("_rev", *v));
                false
            }
            "_deleted" => {
                special.push(("_deleted", *v));
                false
            }
            // CouchDB's replicator sends `_revisions` with its `0-N` checkpoint
            // revisions ({"start":0,"ids":["1"]}); CouchDB ignores it on `_local`
            // documents, and so do we.
            "_id" | "_revisions" => false,
            _ => true,
        });
        for (k, v) in special {
            match k {
                "_rev" => rev = Some(parse_as::<String>(v, "_rev", "a string")?),
                _ => deleted = parse_as::<bool>(v, "_deleted", "a boolean")?,
            }
        }
        let doc = DocInput::from_members(members)?;
        Ok(LocalInput {
            rev,
            deleted,
            body: doc.body,
        })
    }

    fn from_members(members: Vec<(String, &RawValue)>) -> Result<DocInput, Error> {
        let mut doc = DocInput {
            id: None,
            rev: None,
            deleted: false,
            revisions: None,
            body: Vec::with_capacity(64),
        };
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        doc.body.push(b'{');
        for (key, value) in members {
            if !seen.insert(key.clone()) {
                return Err(invalid(format!("duplicate member {key:?}")));
            }
            if !key.starts_with('_') {
                if doc.body.len() > 1 {
                    doc.body.push(b',');
                }
                serde_json::to_writer(&mut doc.body, &key).map_err(|e| invalid(e.to_string()))?;
                doc.body.push(b':');
                doc.body.extend_from_slice(value.get().as_bytes());
                continue;
            }
            match key.as_str() {
                "_id" => doc.id = Some(parse_as::<String>(value, "_id", "a string")?),
                "_rev" => {
                    let rev = parse_as::<String>(value, "_rev", "a string")?;
                    doc.rev = Some(rev.parse()?);
                }
                "_deleted" => doc.deleted = parse_as::<bool>(value, "_deleted", "a boolean")?,
                "_revisions" => doc.revisions = Some(parse_revisions(value)?),
                "_attachments" => {
                    return Err(invalid("attachments are not supported by Sessionfleet".into()))
                }
                k if IGNORED_SPECIALS.contains(&k) => {}
                other => return Err(invalid(format!("Bad special document member: {other}"))),
            }
        }
        doc.body.push(b'}');
        if let (Some(rev), Some(path)) = (&doc.rev, &doc.revisions) {
            if path.first() != Some(rev) {
                return Err(Error::InvalidRevisions {
                    reason: format!("_rev {rev} is not the head of _revisions"),
                });
            }
        }
        Ok(doc)
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidDocument { reason }
}

fn parse_as<'a, T: Deserialize<'a>>(value: &'a RawValue, field: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(value.get()).map_err(|_| invalid(format!("{field} must be {what}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevisionsJson {
    start: u64,
    ids: Vec<String>,
}

fn parse_revisions(value: &RawValue) -> Result<Vec<Rev>, Error> {
    let r: RevisionsJson = serde_json::from_str(value.get()).map_err(|e| Error::InvalidRevisions {
        reason: format!("_revisions must be {{\"start\": N, \"ids\": [...]}}: {e}"),
    })?;
    if r.start > MAX_GENERATION {
        return Err(Error::InvalidRevisions {
            reason: format!("_revisions.start {} exceeds {MAX_GENERATION}", r.start),
        });
    }
    let count = u64::try_from(r.ids.len()).unwrap_or(u64::MAX);
    if r.ids.is_empty() || count > r.start {
        return Err(Error::InvalidRevisions {
            reason: format!("{} ids cannot descend from generation {}", r.ids.len(), r.start),
        });
    }
    (0..count)
        .zip(&r.ids)
        .map(|(i, hash)| Rev::new(r.start - i, hash))
        .collect()
}

/// Parses a JSON object into its top-level members, values left raw.
pub(crate) fn parse_members(text: &str) -> Result<Vec<(String, &RawValue)>, Error> {
    struct Members<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                    while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    let members = Members::deserialize(&mut de).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            invalid("Document must be a JSON object".into())
        } else {
            invalid(format!("invalid JSON: {e}"))
        }
    })?;
    de.end().map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    Ok(members.0)
}

/// Refuses what the raw pass of [`parse_members`] lets through but strict readers (an
/// app's serde_json) refuse or misread on every read: a lone surrogate escape ("\ud800"),
/// a number beyond the range of a double ("1e999"), and a member named like serde_json's
/// raw-value marker, which its `Value` reads as the member's value instead of the object
/// (`{"$serde_json::private::RawValue":"3"}` reads as `3`). Write paths only: a full
/// decode of every string, number and member name, allocating nothing it keeps.
fn check_strict(text: &str) -> Result<(), Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    StrictWalk::deserialize(&mut de)
        .and_then(|StrictWalk| de.end())
        .map_err(|e| invalid(format!("invalid JSON: {e}")))
}

/// The member name serde_json's `Value` treats as a raw-value marker.
const RAW_VALUE_MARKER: &str = "$serde_json::private::RawValue";

/// Walks a JSON value, decoding everything, keeping nothing (see [`check_strict`]).
struct StrictWalk;

impl<'de> Deserialize<'de> for StrictWalk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictWalk)
    }
}

impl<'de> Visitor<'de> for StrictWalk {
    type Value = StrictWalk;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(StrictWalk)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(StrictWalk)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(StrictWalk)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(StrictWalk)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(StrictWalk)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(StrictWalk)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<StrictWalk>()?.is_some() {}
        Ok(StrictWalk)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == RAW_VALUE_MARKER {
                return Err(serde::de::Error::custom(format!(
                    "the member name {RAW_VALUE_MARKER:?} is reserved"
                )));
            }
            map.next_value::<StrictWalk>()?;
        }
        Ok(StrictWalk)
    }
}

/// Checks a body handed to the store ready-made (a replicated revision, an [`Edit`]
/// built by a caller) and reads its expiry member if `expiry_field` is given: it must
/// be what [`DocInput::parse`] produces, a JSON object without special members.
/// Reads splice the body into their answer, so anything else would make every read of
/// the document invalid JSON.
///
/// [`Edit`]: crate::Edit
pub(crate) fn check_body(body: &[u8], expiry_field: Option<&str>) -> Result<Option<u64>, Error> {
    let text = std::str::from_utf8(body).map_err(|e| invalid(format!("body is not valid UTF-8: {e}")))?;
    let mut expiry = None;
    let members = parse_members(text)?;
    check_strict(text)?;
    for (key, value) in members {
        if key.starts_with('_') {
            return Err(invalid(format!("Bad special document member: {key}")));
        }
        if Some(key.as_str()) == expiry_field {
            expiry = Some(expiry_value(value, &key)?);
        }
    }
    Ok(expiry)
}

fn expiry_value(value: &RawValue, field: &str) -> Result<u64, Error> {
    let n: f64 = serde_json::from_str(value.get()).map_err(|_| {
        invalid(format!(
            "expiry member {field:?} must be a number of unix seconds"
        ))
    })?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(invalid(format!("expiry member {field:?} must be non-negative")));
    }
    Ok(n.ceil() as u64)
}

/// Reads an expiry time (unix seconds) from a body member.
///
/// A missing member means "never expires"; a member that is not a non-negative
/// number is an error, so a typo cannot make a session immortal silently.
pub(crate) fn read_expiry(body: &[u8], field: &str) -> Result<Option<u64>, Error> {
    let text = std::str::from_utf8(body).map_err(|e| invalid(e.to_string()))?;
    for (key, value) in parse_members(text)? {
        if key == field {
            return expiry_value(value, field).map(Some);
        }
    }
    Ok(None)
}

/// A document revision as read, ready to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// The document id.
    pub id: DocId,
    /// The revision read.
    pub rev: Rev,
    /// Whether this revision is a tombstone.
    pub deleted: bool,
    /// The body (a JSON object without special members).
    pub body: Vec<u8>,
    /// `_conflicts`, when asked for.
    pub conflicts: Option<Vec<Rev>>,
    /// `_deleted_conflicts`, when asked for.
    pub deleted_conflicts: Option<Vec<Rev>>,
    /// `_revisions` (newest first), when asked for.
    pub revisions: Option<Vec<Rev>>,
}

impl Doc {
    /// The document as CouchDB renders it: `_id`, `_rev`, the body members, then
    /// `_deleted`, `_conflicts`, `_deleted_conflicts` and `_revisions` when present.
    ///
    /// ```
    /// use store::{Doc, DocId};
    /// let doc = Doc {
    ///     id: DocId::new("s1").unwrap(),
    ///     rev: "1-abc".parse().unwrap(),
    ///     deleted: false,
    ///     body: br#"{"user":"ada"}"#.to_vec(),
    ///     conflicts: None,
    ///     deleted_conflicts: None,
    ///     revisions: None,
    /// };
    /// assert_eq!(doc.to_json(), br#"{"_id":"s1","_rev":"1-abc","user":"ada"}"#);
    /// ```
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 96);
        out.extend_from_slice(b"{\"_id\":");
        write_json_str(&mut out, self.id.as_str());
        out.extend_from_slice(b",\"_rev\":\"");
        out.extend_from_slice(self.rev.to_string().as_bytes());
        out.push(b'"');
        let inner = body_inner(&self.body);
        if !inner.is_empty() {
            out.push(b',');
            out.extend_from_slice(inner);
        }
        if self.deleted {
            out.extend_from_slice(b",\"_deleted\":true");
        }
        for (name, revs) in [
            ("_conflicts", &self.conflicts),
            ("_deleted_conflicts", &self.deleted_conflicts),
        ] {
            if let Some(revs) = revs.as_ref().filter(|r| !r.is_empty()) {
                out.extend_from_slice(format!(",\"{name}\":[").as_bytes());
                for (i, r) in revs.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(format!("\"{r}\"").as_bytes());
                }
                out.push(b']');
            }
        }
        if let Some(path) = self.revisions.as_ref().filter(|p| !p.is_empty()) {
            out.extend_from_slice(
                format!(",\"_revisions\":{{\"start\":{},\"ids\":[", path[0].generation()).as_bytes(),
            );
            for (i, r) in path.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(format!("\"{}\"", r.hash()).as_bytes());
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b'}');
        out
    }
}

/// The members of a canonical body without the enclosing braces.
fn body_inner(body: &[u8]) -> &[u8] {
    if body.len() >= 2 {
        &body[1..body.len() - 1]
    } else {
        &[]
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_specials_from_body() {
        let d = DocInput::parse(
            br#"{"_id":"a","_rev":"2-b","_deleted":true,"_revisions":{"start":2,"ids":["b","a"]},"x":{"y": 1},"_conflicts":[]}"#,
            1000,
        )
        .unwrap();
        assert_eq!(d.id.as_deref(), Some("a"));
        assert_eq!(d.rev, Some("2-b".parse().unwrap()));
        assert!(d.deleted);
        assert_eq!(
            d.revisions.unwrap(),
            vec!["2-b".parse().unwrap(), "1-a".parse().unwrap()]
        );
        assert_eq!(d.body, br#"{"x":{"y": 1}}"#);
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"\"x\"",
            b"{",
            b"{\"a\":1} x",
            b"{\"_foo\":1}",
            b"{\"_id\":1}",
            b"{\"_rev\":\"nope\"}",
            b"{\"_deleted\":\"yes\"}",
            b"{\"_revisions\":{\"start\":1,\"ids\":[\"a\",\"b\"]}}",
            b"{\"_rev\":\"2-x\",\"_revisions\":{\"start\":2,\"ids\":[\"y\",\"a\"]}}",
            b"{\"a\":1,\"a\":2}",
            b"{\"a\":\"\xff\"}",
            b"{\"_attachments\":{}}",
        ];
        for c in cases {
            assert!(
                DocInput::parse(c, 1000).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(c)
            );
        }
        assert!(matches!(
            DocInput::parse(b"{\"a\":\"0123456789\"}", 10),
            Err(Error::DocumentTooLarge { .. })
        ));
    }

    #[test]
    fn revisions_are_bounded_before_any_arithmetic() {
        for start in ["10000000000000000000", "18446744073709551615", "9007199254740992"] {
            let json = format!(r#"{{"_id":"x","_revisions":{{"start":{start},"ids":["a"]}}}}"#);
            assert!(
                matches!(
                    DocInput::parse(json.as_bytes(), 1000),
                    Err(Error::InvalidRevisions { .. })
                ),
                "start {start} accepted"
            );
        }
        let top = format!(r#"{{"_revisions":{{"start":{MAX_GENERATION},"ids":["b","a"]}}}}"#);
        let d = DocInput::parse(top.as_bytes(), 1000).unwrap();
        assert_eq!(d.revisions.unwrap()[1].generation(), MAX_GENERATION - 1);
    }

    #[test]
    fn local_documents_take_couchdb_checkpoints() {
        // What CouchDB 3.4.3's replicator PUTs on the source (captured).
        let body = br#"{"_id":"_local/a1d6","_rev":"0-1","session_id":"bfed","source_last_seq":2,
            "history":[{"session_id":"bfed","recorded_seq":2}],"_revisions":{"start":0,"ids":["1"]}}"#;
        let l = DocInput::parse_local(body, 10_000).unwrap();
        assert_eq!(l.rev.as_deref(), Some("0-1"));
        let v: serde_json::Value = serde_json::from_slice(&l.body).unwrap();
        assert_eq!(v["source_last_seq"], 2);
        assert!(v.get("_revisions").is_none());
    }

    #[test]
    fn renders_round_trip() {
        let d = Doc {
            id: DocId::new("q\"uote").unwrap(),
            rev: "2-b".parse().unwrap(),
            deleted: true,
            body: b"{}".to_vec(),
            conflicts: Some(vec!["2-a".parse().unwrap()]),
            deleted_conflicts: Some(vec![]),
            revisions: Some(vec!["2-b".parse().unwrap(), "1-a".parse().unwrap()]),
        };
        let v: serde_json::Value = serde_json::from_slice(&d.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"_id":"q\"uote","_rev":"2-b","_deleted":true,"_conflicts":["2-a"],
                "_revisions":{"start":2,"ids":["b","a"]}})
        );
    }

    #[test]
    fn expiry_member() {
        assert_eq!(read_expiry(br#"{"exp":12.5}"#, "exp").unwrap(), Some(13));
        assert_eq!(read_expiry(br#"{"other":1}"#, "exp").unwrap(), None);
        assert!(read_expiry(br#"{"exp":"soon"}"#, "exp").is_err());
        assert!(read_expiry(br#"{"exp":-1}"#, "exp").is_err());
    }
}
