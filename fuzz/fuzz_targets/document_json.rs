//! Document JSON as clients and replicators send it (`_id`, `_rev`, `_revisions`,
//! `_deleted`, special members, sizes): parses or is refused; what parses is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::DocInput;

const MAX: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = DocInput::parse(data, MAX) else {
        let _ = DocInput::parse_local(data, MAX);
        return;
    };
    // The stored body is a JSON object without special members, and parsing it again
    // changes nothing.
    let v: serde_json::Value = serde_json::from_slice(&doc.body).expect("the canonical body is JSON");
    let obj = v.as_object().expect("the canonical body is an object");
    assert!(obj.keys().all(|k| !k.starts_with('_')), "a special member kept in the body");
    let again = DocInput::parse(&doc.body, MAX).expect("the canonical body parses");
    assert_eq!(again.body, doc.body, "canonicalisation is not idempotent");
    assert!(again.id.is_none() && again.rev.is_none() && again.revisions.is_none());
    // `_rev` heads `_revisions`, whose generations count down by one.
    if let Some(revs) = &doc.revisions {
        assert!(!revs.is_empty());
        if let Some(rev) = &doc.rev {
            assert_eq!(rev, &revs[0]);
        }
        for w in revs.windows(2) {
            assert_eq!(w[0].generation(), w[1].generation() + 1, "{revs:?}");
        }
    }
});
