// Real PouchDB (in-memory adapter) replicating into and out of a Sessionfleet
// node: 1,000 documents with updates, deletes and one conflict; both sides must
// end identical (winners and conflicts). Credentials travel as a CouchDB 3 user
// gives them: in the URL for PouchDB, and through POST /_session (an AuthSession
// cookie) for a second, cookie-authenticated PouchDB.
// Usage: node pouchdb_interop.js http://USER:PASSWORD@127.0.0.1:PORT
'use strict';
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));

const base = process.argv[2];
if (!base) {
  console.error('usage: node pouchdb_interop.js http://127.0.0.1:PORT');
  process.exit(2);
}
const N = 1000;
// fetch() refuses URLs with credentials: raw requests send them as a header.
const parsed = new URL(base);
const user = decodeURIComponent(parsed.username);
const password = decodeURIComponent(parsed.password);
parsed.username = '';
parsed.password = '';
const plain = parsed.toString().replace(/\/$/, '');
const basic = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');

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
  const resp = await fetch(`${plain}/interop/doc-0500`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: basic },
    body: JSON.stringify({ _rev: base500._rev, v: 'remote-edit' }),
  });
  if (resp.status !== 201) fail(`remote edit answered ${resp.status}`);
  // And a write made only on the node.
  await fetch(`${plain}/interop/node-only`, {
    method: 'PUT',
    headers: { authorization: basic },
    body: JSON.stringify({ v: 'from-node' }),
  });

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

  // Without credentials the node refuses PouchDB (no admin party).
  const anon = await fetch(`${plain}/interop`);
  if (anon.status !== 401) fail(`anonymous read answered ${anon.status}`);

  // Cookie authentication, as CouchDB's web clients do it: POST /_session, then
  // every request carries the AuthSession cookie.
  const login = await fetch(`${plain}/_session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: user, password }),
  });
  if (login.status !== 200) fail(`POST /_session answered ${login.status}`);
  const cookie = (login.headers.get('set-cookie') || '').split(';')[0];
  if (!cookie.startsWith('AuthSession=')) fail(`no AuthSession cookie: ${cookie}`);
  const byCookie = new PouchDB(`${plain}/interop`, {
    fetch: (url, opts) => {
      opts.headers.set('Cookie', cookie);
      return PouchDB.fetch(url, opts);
    },
  });
  const viaCookie = new PouchDB('via-cookie', { adapter: 'memory' });
  await viaCookie.replicate.from(byCookie);
  compare(await state(viaCookie), b, 'cookie-authenticated pull vs node');
  await viaCookie.put({ _id: 'via-cookie', v: 'pushed with a cookie' });
  const cookiePush = await viaCookie.replicate.to(byCookie);
  if (!cookiePush.ok || cookiePush.docs_written !== 1) fail(`cookie push wrote ${cookiePush.docs_written}`);

  console.log(JSON.stringify({
    ok: true,
    docs: Object.keys(b).length,
    conflict: a['doc-0500'],
    pushed: push.docs_written,
    pulled: pull.docs_written,
  }));
})().catch((e) => fail(e && e.stack ? e.stack : String(e)));
