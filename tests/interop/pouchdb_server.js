// A CouchDB-compatible server made of PouchDB (in memory) and express-pouchdb,
// the engine of pouchdb-server: the "other CouchDB" of the migration test.
// Usage: node pouchdb_server.js PORT   (prints "ready" once listening)
'use strict';
const express = require('express');
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));

const port = Number(process.argv[2]);
if (!port) {
  console.error('usage: node pouchdb_server.js PORT');
  process.exit(2);
}
const MemPouch = PouchDB.defaults({ adapter: 'memory' });
const app = express();
app.use('/', require('express-pouchdb')(MemPouch, { mode: 'minimumForPouchDB', logPath: '/dev/null' }));
app.listen(port, '127.0.0.1', () => console.log('ready'));
