//! Decoded `WriteRevs` messages, as a peer can send them, merged into a real temporary
//! store: refused documents come back as errors, and every revision accepted is then
//! held, and the winner's body is a JSON object.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use proto::v1::WriteRevsRequest;
use store::{DbName, DocId, ReadOptions, Rev, Store, StoreOptions};

struct World {
    runtime: tokio::runtime::Runtime,
    db: store::Database,
    _dir: tempfile::TempDir,
    _store: Store,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StoreOptions {
            durability: store::Durability::Buffered,
            ..StoreOptions::default()
        };
        let st = Store::open(dir.path(), opts).expect("open the store");
        let name = DbName::new("sessions").expect("db name");
        runtime
            .block_on(st.create_db(&name, Default::default()))
            .expect("create the database");
        let db = st.db(&name).expect("the database");
        World {
            runtime,
            db,
            _dir: dir,
            _store: st,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = WriteRevsRequest::decode(data) else { return };
    if req.revisions.len() > 64 {
        return;
    }
    let w = world();
    let sent: Vec<(String, String)> = req
        .revisions
        .iter()
        .map(|r| (r.id.clone(), r.path.first().cloned().unwrap_or_default()))
        .collect();
    let errors = w
        .runtime
        .block_on(server::fuzzing::merge_revisions(&w.db, req.revisions))
        .expect("a batch of bad documents is refused document by document, not as a whole");
    for (id, head) in sent {
        if errors.iter().any(|e| e.id == id) {
            continue;
        }
        let (Ok(doc_id), Ok(rev)) = (DocId::new(&id), head.parse::<Rev>()) else {
            panic!("{id:?} {head:?} did not parse yet was not refused");
        };
        let diff = w.db.revs_diff(&doc_id, &[rev.clone()]).expect("revs_diff");
        assert!(diff.missing.is_empty(), "{id} {rev} accepted but missing");
        // The winner reads back, or the document's winner is a tombstone.
        // Its body is a JSON object, as every read splices it into its answer.
        match w.db.get(&doc_id, &ReadOptions::default()) {
            Ok(doc) => {
                let v: serde_json::Value = serde_json::from_slice(&doc.body)
                    .unwrap_or_else(|e| panic!("{id}: stored body is not JSON: {e}"));
                assert!(v.is_object(), "{id}: stored body is not an object");
            }
            Err(store::Error::NotFound { .. }) => {}
            Err(e) => panic!("{id}: reading the winner failed: {e}"),
        }
    }
});
