// PouchDB-to-PouchDB replication baseline for BENCHMARKS.md, measured the way
// Sessionfleet is: a source served over HTTP (express-pouchdb, in memory) and a
// target PouchDB (in memory) replicating from it.
//   catch-up: the target joins late and pulls N sessions: docs/s
//   lag: live replication while 8 writers PUT at RATE/s into the source: p50/p99
// Usage: node pouchdb_bench.js PORT N RATE SECONDS   -> one JSON line
'use strict';
const http = require('http');
const express = require('express');
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));

const [port, N, RATE, SECS] = process.argv.slice(2).map(Number);
const pad = 'x'.repeat(976);
const body = (i) => ({ user: `u${i}`, expires_at: 4102444800, pad });
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function put(path, doc) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(doc);
    const req = http.request({ host: '127.0.0.1', port, path, method: 'PUT', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode < 300 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

function pct(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
}

(async () => {
  const MemPouch = PouchDB.defaults({ adapter: 'memory' });
  const app = express();
  app.use('/', require('express-pouchdb')(MemPouch, { mode: 'minimumForPouchDB', logPath: '/dev/null' }));
  const server = app.listen(port, '127.0.0.1');
  await new Promise((r) => server.on('listening', r));

  const source = new MemPouch('bench');
  for (let i = 0; i < N; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(N, i + 1000); j++) docs.push({ _id: `session-${String(j).padStart(8, '0')}`, ...body(j) });
    await source.bulkDocs(docs);
  }
  const remote = new PouchDB(`http://127.0.0.1:${port}/bench`);

  // Catch-up.
  const late = new PouchDB('late', { adapter: 'memory' });
  const t0 = process.hrtime.bigint();
  const res = await late.replicate.from(remote, { batch_size: 500 });
  const catchupSecs = Number(process.hrtime.bigint() - t0) / 1e9;

  // Lag under a steady write rate.
  const follower = new PouchDB('follower', { adapter: 'memory' });
  await follower.replicate.from(remote);
  const acked = new Map();
  const seen = new Map();
  const changes = follower.changes({ live: true, since: 'now' }).on('change', (c) => {
    if (!seen.has(c.id)) seen.set(c.id, process.hrtime.bigint());
  });
  const rep = follower.replicate.from(remote, { live: true, retry: true, batch_size: 100 });
  const writers = 8;
  const interval = (1000 * writers) / RATE;
  const start = Date.now();
  await Promise.all([...Array(writers).keys()].map(async (w) => {
    let n = 0;
    let next = Date.now();
    while (Date.now() - start < SECS * 1000) {
      next += interval;
      const id = `lag-${w}-${++n}`;
      await put(`/bench/${id}`, body(n));
      acked.set(id, process.hrtime.bigint());
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }));
  const writeSecs = (Date.now() - start) / 1000;
  const deadline = Date.now() + 30000;
  while (seen.size < acked.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  rep.cancel();
  changes.cancel();
  const lags = [];
  for (const [id, t] of acked) if (seen.has(id)) lags.push(Number(seen.get(id) - t) / 1e6);
  lags.sort((a, b) => a - b);
  console.log(JSON.stringify({
    catchup_docs: res.docs_written,
    catchup_secs: catchupSecs,
    catchup_docs_per_sec: res.docs_written / catchupSecs,
    written: acked.size,
    seen: lags.length,
    write_rate: acked.size / writeSecs,
    p50_ms: pct(lags, 0.5),
    p99_ms: pct(lags, 0.99),
    max_ms: lags.length ? lags[lags.length - 1] : NaN,
  }));
  server.close();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
