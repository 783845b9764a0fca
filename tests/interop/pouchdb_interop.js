// Real PouchDB (in-memory adapter) replicating into and out of a Sessionfleet
// node: 1,000 documents with updates, deletes and one conflict; both sides must
// end identical (winners and conflicts). Usage: node pouchdb_interop.js BASE_URL
'use strict';
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));

const base = process.argv[2];
if (!base) {
  console.error('usage: node pouchdb_interop.js http://127.0.0.1:PORT');
  process.exit(2);
}
const N = 1000;

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}

async function state(db) {
  const all = await db.allDocs();
  const out = {};
  for (const row of all.rows) {
    const doc = await db.get(row.id, { conflicts: true });
    out[row.id] = { rev: doc._rev, conflicts: (doc._conflicts || []).slice().sort(), body: doc.v };
  }
  return out;
}

function compare(a, b, what) {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (JSON.stringify(ka) !== JSON.stringify(kb)) {
    fail(`${what}: different ids (${ka.length} vs ${kb.length})`);
  }
  for (const k of ka) {
    if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) {
      fail(`${what}: ${k} differs: ${JSON.stringify(a[k])} vs ${JSON.stringify(b[k])}`);
    }
  }
}

(async () => {
  const local = new PouchDB('src', { adapter: 'memory' });
  const remote = new PouchDB(`${base}/interop`);

  // 1,000 documents, 200 updated, 100 deleted.
  const docs = [];
  for (let i = 0; i < N; i++) docs.push({ _id: `doc-${String(i).padStart(4, '0')}`, v: i });
  const created = await local.bulkDocs(docs);
  for (let i = 0; i < 200; i++) {
    await local.put({ _id: created[i].id, _rev: created[i].rev, v: `updated-${i}` });
  }
  for (let i = 900; i < N; i++) {
    await local.remove(created[i].id, created[i].rev);
  }

  // Push into the node.
  const push = await local.replicate.to(remote);
  if (!push.ok || push.docs_written < N) fail(`push wrote ${push.docs_written}`);

  // One conflict: both sides edit doc-0500 from the same revision.
  const base500 = await local.get('doc-0500');
  await local.put({ ...base500, v: 'local-edit' });
  const resp = await fetch(`${base}/interop/doc-0500`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ _rev: base500._rev, v: 'remote-edit' }),
  });
  if (resp.status !== 201) fail(`remote edit answered ${resp.status}`);
  // And a write made only on the node.
  await fetch(`${base}/interop/node-only`, { method: 'PUT', body: JSON.stringify({ v: 'from-node' }) });

  // Both ways, then compare.
  await local.replicate.to(remote);
  const pull = await local.replicate.from(remote);
  if (!pull.ok) fail('pull failed');
  const a = await state(local);
  const b = await state(remote);
  compare(a, b, 'pouch vs node');
  if (!a['doc-0500'] || a['doc-0500'].conflicts.length !== 1) fail(`doc-0500 should have one conflict: ${JSON.stringify(a['doc-0500'])}`);
  if (a['doc-0950']) fail('a deleted document came back');
  if (!a['node-only']) fail('a write made on the node did not reach PouchDB');

  // A fresh PouchDB pulling everything from the node sees the same state.
  const fresh = new PouchDB('fresh', { adapter: 'memory' });
  await fresh.replicate.from(remote);
  compare(await state(fresh), b, 'fresh pull vs node');

  // Incremental: a second pull resumes from its checkpoint and moves nothing.
  const again = await fresh.replicate.from(remote);
  if (again.docs_read !== 0) fail(`checkpoint not used: re-read ${again.docs_read}`);

  console.log(JSON.stringify({
    ok: true,
    docs: Object.keys(b).length,
    conflict: a['doc-0500'],
    pushed: push.docs_written,
    pulled: pull.docs_written,
  }));
})().catch((e) => fail(e && e.stack ? e.stack : String(e)));
