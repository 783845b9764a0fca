//! Every HTTP endpoint against a real node on a real socket, with its error paths.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn welcome_up_all_dbs_and_stable_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    let w = n.must("GET", "/", None, 200).await;
    assert_eq!(w["couchdb"], "Welcome");
    assert_eq!(w["vendor"]["name"], "Sessionfleet");
    assert!(w["version"].is_string());
    let uuid = w["uuid"].as_str().unwrap().to_owned();
    assert_eq!(uuid.len(), 32);
    assert_eq!(n.must("GET", "/_up", None, 200).await["status"], "ok");
    n.must("PUT", "/b", None, 201).await;
    n.must("PUT", "/a", None, 201).await;
    assert_eq!(
        n.must("GET", "/_all_dbs", None, 200).await,
        json!(["_replicator", "a", "b"])
    );
    let e = n
        .must("POST", "/_session", Some(json!({"name":"x","password":"y"})), 404)
        .await;
    assert_eq!(e["error"], "not_found");
    assert_eq!(n.must("GET", "/_active_tasks", None, 200).await, json!([]));
    n.must("GET", "/_nope", None, 404).await;
    n.stop().await;

    let n = must_start(dir.path()).await;
    assert_eq!(
        n.must("GET", "/", None, 200).await["uuid"],
        uuid.as_str(),
        "uuid survives restarts"
    );
    n.stop().await;
}

#[tokio::test]
async fn database_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    assert_eq!(n.must("PUT", "/sessions", None, 201).await, json!({"ok": true}));
    let e = n.must("PUT", "/sessions", None, 412).await;
    assert_eq!(e["error"], "file_exists");
    let e = n.must("PUT", "/Bad", None, 400).await;
    assert_eq!(e["error"], "illegal_database_name");
    let info = n.must("GET", "/sessions", None, 200).await;
    for key in [
        "db_name",
        "doc_count",
        "doc_del_count",
        "update_seq",
        "sizes",
        "purge_seq",
        "compact_running",
    ] {
        assert!(info.get(key).is_some(), "missing {key} in {info}");
    }
    // The incarnation: CouchDB's replicator compares it around checkpoints.
    let incarnation = info["instance_start_time"].as_str().unwrap().to_owned();
    assert_eq!(incarnation.len(), 16, "{info}");
    assert_eq!(info["update_seq"], 0);
    let e = n.must("GET", "/missing", None, 404).await;
    assert_eq!(
        e,
        json!({"error": "not_found", "reason": "Database does not exist."})
    );
    n.must("DELETE", "/sessions?rev=1-x", None, 400).await;
    n.must("DELETE", "/sessions", None, 200).await;
    n.must("DELETE", "/sessions", None, 404).await;
    // Options at creation: expiry field and revs_limit.
    n.must("PUT", "/exp?expiry_field=expires_at&revs_limit=5", None, 201)
        .await;
    let info = n.must("GET", "/exp", None, 200).await;
    assert_eq!(
        (info["expiry_field"].clone(), info["revs_limit"].clone()),
        (json!("expires_at"), json!(5))
    );
    assert_eq!(n.must("GET", "/exp/_revs_limit", None, 200).await, json!(5));
    n.must("PUT", "/exp/_revs_limit", Some(json!(9)), 200).await;
    assert_eq!(n.must("GET", "/exp/_revs_limit", None, 200).await, json!(9));
    n.must("PUT", "/exp/_revs_limit", Some(json!(0)), 400).await;
    let ok = n.must("POST", "/exp/_ensure_full_commit", None, 201).await;
    let exp_incarnation = n.must("GET", "/exp", None, 200).await["instance_start_time"].clone();
    assert_eq!(ok, json!({"ok": true, "instance_start_time": exp_incarnation}));
    assert_ne!(exp_incarnation, json!(incarnation));
    n.must("POST", "/exp/_compact", None, 202).await;
    n.must("POST", "/missing/_compact", None, 404).await;
    n.stop().await;
}

#[tokio::test]
async fn documents_crud_conflicts_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let r = n
        .must("PUT", "/db/s1", Some(json!({"user": "ada", "n": 1})), 201)
        .await;
    assert_eq!(r["ok"], true);
    let rev1 = r["rev"].as_str().unwrap().to_owned();
    assert!(rev1.starts_with("1-"));
    let doc = n.must("GET", "/db/s1", None, 200).await;
    assert_eq!(doc, json!({"_id": "s1", "_rev": rev1, "user": "ada", "n": 1}));

    let e = n.must("PUT", "/db/s1", Some(json!({"user": "bob"})), 409).await;
    assert_eq!(
        e,
        json!({"error": "conflict", "reason": "Document update conflict."})
    );
    let r2 = n
        .must(
            "PUT",
            "/db/s1",
            Some(json!({"_rev": rev1, "user": "ada", "n": 2})),
            201,
        )
        .await;
    let rev2 = r2["rev"].as_str().unwrap().to_owned();
    // rev in the query works as in CouchDB.
    n.must("PUT", &format!("/db/s1?rev={rev1}"), Some(json!({"n": 3})), 409)
        .await;

    let old = n.must("GET", &format!("/db/s1?rev={rev1}"), None, 200).await;
    assert_eq!(old["n"], 1);
    let with_revs = n.must("GET", "/db/s1?revs=true", None, 200).await;
    assert_eq!(with_revs["_revisions"]["start"], 2);
    assert_eq!(with_revs["_revisions"]["ids"].as_array().unwrap().len(), 2);

    // POST /db generates an id.
    let p = n.must("POST", "/db", Some(json!({"k": "v"})), 201).await;
    assert_eq!(p["id"].as_str().unwrap().len(), 32);
    let p = n.must("POST", "/db", Some(json!({"_id": "chosen"})), 201).await;
    assert_eq!(p["id"], "chosen");

    n.must("DELETE", "/db/s1", None, 409).await;
    let d = n.must("DELETE", &format!("/db/s1?rev={rev2}"), None, 200).await;
    assert!(d["rev"].as_str().unwrap().starts_with("3-"));
    let e = n.must("GET", "/db/s1", None, 404).await;
    assert_eq!(e, json!({"error": "not_found", "reason": "deleted"}));
    let e = n.must("GET", "/db/nope", None, 404).await;
    assert_eq!(e, json!({"error": "not_found", "reason": "missing"}));
    n.must("DELETE", "/db/nope?rev=1-abc", None, 409).await;
    n.must("GET", "/nodb/x", None, 404).await;

    // HEAD carries the ETag.
    let resp = n.http.head(n.url("/db/chosen")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("\"1-"));

    // Document ids with reserved prefixes and escapes.
    n.must("PUT", "/db/_design/app", Some(json!({"views": {}})), 201)
        .await;
    n.must("GET", "/db/_design/app", None, 200).await;
    n.must("PUT", "/db/a%2Fb", Some(json!({})), 201).await;
    assert_eq!(n.must("GET", "/db/a%2Fb", None, 200).await["_id"], "a/b");
    n.stop().await;
}

#[tokio::test]
async fn replication_endpoints_conflicts_open_revs_and_multipart() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let docs = json!({"new_edits": false, "docs": [
        {"_id": "d", "_rev": "2-aaa", "_revisions": {"start": 2, "ids": ["aaa", "root"]}, "side": "a"},
        {"_id": "d", "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "root"]}, "side": "b"},
        {"_id": "e", "_rev": "1-x", "_deleted": true},
    ]});
    assert_eq!(
        n.must("POST", "/db/_bulk_docs", Some(docs.clone()), 201).await,
        json!([])
    );
    assert_eq!(
        n.must("POST", "/db/_bulk_docs", Some(docs), 201).await,
        json!([]),
        "idempotent"
    );
    let bad = json!({"new_edits": false, "docs": [{"_id": "f", "_rev": "3-c", "_revisions": {"start": 2, "ids": ["c"]}}]});
    let errors = n.must("POST", "/db/_bulk_docs", Some(bad), 201).await;
    assert_eq!(errors[0]["id"], "f");
    assert_eq!(errors[0]["error"], "bad_request");

    let doc = n.must("GET", "/db/d?conflicts=true", None, 200).await;
    assert_eq!(doc["_rev"], "2-bbb");
    assert_eq!(doc["_conflicts"], json!(["2-aaa"]));

    let diff = n
        .must(
            "POST",
            "/db/_revs_diff",
            Some(json!({"d": ["2-aaa", "3-ccc"], "e": ["1-x"], "z": ["1-q"]})),
            200,
        )
        .await;
    assert_eq!(diff["d"]["missing"], json!(["3-ccc"]));
    assert!(diff["d"]["possible_ancestors"]
        .as_array()
        .unwrap()
        .contains(&json!("2-aaa")));
    assert!(diff.get("e").is_none());
    assert_eq!(diff["z"], json!({"missing": ["1-q"]}));

    let got = n
        .must(
            "POST",
            "/db/_bulk_get?revs=true&latest=true",
            Some(json!({"docs": [{"id": "d", "rev": "2-aaa"}, {"id": "d", "rev": "9-zz"}, {"id": "nope"}]})),
            200,
        )
        .await;
    let results = got["results"].as_array().unwrap();
    assert_eq!(got.as_object().unwrap().len(), 1, "only key is results");
    assert_eq!(results[0]["docs"][0]["ok"]["side"], "a");
    assert_eq!(
        results[0]["docs"][0]["ok"]["_revisions"]["ids"],
        json!(["aaa", "root"])
    );
    assert_eq!(results[1]["docs"][0]["error"]["error"], "not_found");
    assert_eq!(results[1]["docs"][0]["error"]["rev"], "9-zz");
    assert_eq!(results[2]["docs"][0]["error"]["id"], "nope");

    let all = n.must("GET", "/db/d?open_revs=all&revs=true", None, 200).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let listed = n
        .must("GET", "/db/d?open_revs=[\"2-aaa\",\"5-gone\"]", None, 200)
        .await;
    assert_eq!(listed[0]["ok"]["_rev"], "2-aaa");
    assert_eq!(listed[1], json!({"missing": "5-gone"}));

    // The CouchDB replicator asks for multipart.
    let resp = n
        .http
        .get(n.url("/db/d?open_revs=[\"2-aaa\",\"5-gone\"]&revs=true&latest=true"))
        .header("accept", "multipart/mixed")
        .send()
        .await
        .unwrap();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let boundary = ct
        .split("boundary=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let text = resp.text().await.unwrap();
    let parts: Vec<&str> = text
        .split(&format!("--{boundary}"))
        .filter(|p| p.contains("Content-Type"))
        .collect();
    assert_eq!(parts.len(), 2, "{text}");
    assert!(parts[0].contains("\"side\":\"a\""));
    assert!(parts[1].contains("error=\"true\"") && parts[1].contains("5-gone"));
    assert!(text.trim_end().ends_with(&format!("--{boundary}--")));

    n.must("GET", "/db/d?open_revs=[bad", None, 400).await;
    n.stop().await;
}

#[tokio::test]
async fn bulk_docs_interactive_and_all_docs() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    let rows = n
        .must(
            "POST",
            "/db/_bulk_docs",
            Some(json!({"docs": [{"_id": "a", "v": 1}, {"_id": "b"}, {"_id": "c"}, {"v": "generated"}, {"_id": "_bad"}, {"_id": "_local/cp", "seq": 1}]})),
            201,
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows[..4].iter().all(|r| r["ok"] == true), "{rows:?}");
    assert_eq!(rows[4]["error"], "bad_request");
    assert_eq!(rows[5]["rev"], "0-1");
    // A generated id is random hex: it falls in the range "b".."c" one time in 16.
    let generated = rows[3]["id"].as_str().unwrap().to_owned();
    let conflict = n
        .must(
            "POST",
            "/db/_bulk_docs",
            Some(json!({"docs": [{"_id": "a"}]})),
            201,
        )
        .await;
    assert_eq!(conflict[0]["error"], "conflict");

    let all = n.must("GET", "/db/_all_docs", None, 200).await;
    assert_eq!(all["total_rows"], 4);
    let ids: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "id order");
    assert!(["a", "b", "c"].iter().all(|k| ids.contains(k)), "{ids:?}");
    let some = n
        .must(
            "GET",
            "/db/_all_docs?startkey=\"b\"&endkey=\"c\"&include_docs=true",
            None,
            200,
        )
        .await;
    let in_range = usize::from(("b".."c").contains(&generated.as_str()));
    assert_eq!(some["rows"].as_array().unwrap().len(), 2 + in_range, "{some}");
    assert_eq!(some["rows"][0]["doc"]["_id"], "b");
    let desc = n
        .must("GET", "/db/_all_docs?descending=true&limit=1&skip=0", None, 200)
        .await;
    assert_eq!(desc["rows"].as_array().unwrap().len(), 1);
    let keyed = n
        .must("POST", "/db/_all_docs", Some(json!({"keys": ["c", "zz"]})), 200)
        .await;
    assert_eq!(keyed["rows"][1], json!({"key": "zz", "error": "not_found"}));
    let keyed = n.must("GET", "/db/_all_docs?keys=[\"a\"]", None, 200).await;
    assert_eq!(keyed["rows"][0]["id"], "a");
    n.must("GET", "/db/_all_docs?limit=abc", None, 400).await;
    n.must("GET", "/db/_all_docs?startkey=notjson", None, 400).await;
    n.stop().await;
}

#[tokio::test]
async fn local_documents() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    n.must("PUT", "/db", None, 201).await;
    n.must("GET", "/db/_local/cp", None, 404).await;
    let r = n
        .must(
            "PUT",
            "/db/_local/cp",
            Some(json!({"history": [], "session_id": "s"})),
            201,
        )
        .await;
    assert_eq!(r, json!({"ok": true, "id": "_local/cp", "rev": "0-1"}));
    let doc = n.must("GET", "/db/_local/cp", None, 200).await;
    assert_eq!(
        doc,
        json!({"_id": "_local/cp", "_rev": "0-1", "history": [], "session_id": "s"})
    );
    n.must("PUT", "/db/_local/cp", Some(json!({"x": 1})), 409).await;
    let r = n
        .must("PUT", "/db/_local/cp", Some(json!({"_rev": "0-1", "x": 1})), 201)
        .await;
    assert_eq!(r["rev"], "0-2");
    n.must("PUT", "/db/_local/cp", Some(json!({"_rev": "1-abc"})), 400)
        .await;
    assert_eq!(
        n.must("GET", "/db", None, 200).await["update_seq"],
        0,
        "not a change"
    );
    n.must("DELETE", "/db/_local/cp?rev=0-2", None, 200).await;
    n.must("GET", "/db/_local/cp", None, 404).await;
    n.stop().await;
}

async fn seed(n: &TestNode) -> String {
    n.must("PUT", "/db", None, 201).await;
    let a = n.must("PUT", "/db/a", Some(json!({"v": 1})), 201).await;
    n.must("PUT", "/db/b", Some(json!({"v": 2})), 201).await;
    let rev = a["rev"].as_str().unwrap().to_owned();
    n.must("PUT", "/db/a", Some(json!({"_rev": rev, "v": 3})), 201)
        .await;
    rev
}

#[tokio::test]
async fn changes_normal_feed_options() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    seed(&n).await;
    let c = n.must("GET", "/db/_changes", None, 200).await;
    assert_eq!(c["last_seq"], 3);
    assert_eq!(c["pending"], 0);
    let results = c["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        (results[0]["seq"].clone(), results[0]["id"].clone()),
        (json!(2), json!("b"))
    );
    assert!(results[1]["changes"][0]["rev"]
        .as_str()
        .unwrap()
        .starts_with("2-"));
    let c = n.must("GET", "/db/_changes?since=2", None, 200).await;
    assert_eq!(c["results"].as_array().unwrap().len(), 1);
    let c = n.must("GET", "/db/_changes?since=\"2\"", None, 200).await;
    assert_eq!(c["results"].as_array().unwrap().len(), 1);
    let c = n.must("GET", "/db/_changes?limit=1", None, 200).await;
    assert_eq!(
        (c["last_seq"].clone(), c["pending"].clone()),
        (json!(2), json!(1))
    );
    let c = n
        .must("GET", "/db/_changes?include_docs=true&style=all_docs", None, 200)
        .await;
    assert_eq!(c["results"][1]["doc"]["v"], 3);
    let c = n.must("GET", "/db/_changes?since=now", None, 200).await;
    assert_eq!(
        (c["results"].as_array().unwrap().len(), c["last_seq"].clone()),
        (0, json!(3))
    );
    let c = n
        .must("GET", "/db/_changes?filter=_doc_ids&doc_ids=[\"a\"]", None, 200)
        .await;
    assert_eq!(c["results"].as_array().unwrap().len(), 1);
    let c = n
        .must(
            "POST",
            "/db/_changes?filter=_doc_ids",
            Some(json!({"doc_ids": ["b"]})),
            200,
        )
        .await;
    assert_eq!(c["results"][0]["id"], "b");
    for bad in [
        "since=x",
        "feed=bogus",
        "limit=-1",
        "style=x",
        "filter=app/f",
        "heartbeat=x",
        "timeout=1.5",
    ] {
        let (s, e) = n.req("GET", &format!("/db/_changes?{bad}"), None).await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert!(e["error"].is_string() && e["reason"].is_string());
    }
    n.stop().await;
}

#[tokio::test]
async fn changes_longpoll_wakes_on_commit_and_honours_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    seed(&n).await;
    // Timeout with nothing new: an empty result after ~timeout.
    let started = Instant::now();
    let c = n
        .must("GET", "/db/_changes?feed=longpoll&since=3&timeout=300", None, 200)
        .await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(
        (c["results"].as_array().unwrap().len(), c["last_seq"].clone()),
        (0, json!(3))
    );
    // A write wakes it.
    let url = n.url("/db/_changes?feed=longpoll&since=3&timeout=10000&heartbeat=50");
    let client = n.http.clone();
    let waiter = tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    n.must("PUT", "/db/c", Some(json!({})), 201).await;
    let text = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(
        text.starts_with('\n'),
        "heartbeat newlines precede the body: {text:?}"
    );
    let v: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["results"][0]["id"], "c");
    assert_eq!(v["last_seq"], 4);
    n.stop().await;
}

#[tokio::test]
async fn changes_continuous_and_eventsource() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    seed(&n).await;
    let text = n.text("/db/_changes?feed=continuous&timeout=200").await;
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[2], json!({"last_seq": 3}));
    // Live: a change committed while the feed is open arrives on it.
    let url = n.url("/db/_changes?feed=continuous&since=3&timeout=1000");
    let client = n.http.clone();
    let feed = tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    n.must("PUT", "/db/live", Some(json!({})), 201).await;
    let text = feed.await.unwrap();
    assert!(text.contains("\"id\":\"live\""), "{text}");
    assert!(text.trim_end().ends_with("{\"last_seq\":4}"), "{text}");
    // limit ends the feed.
    let text = n.text("/db/_changes?feed=continuous&limit=1").await;
    assert_eq!(text.lines().count(), 2, "{text}");

    let resp = n
        .http
        .get(n.url("/db/_changes?feed=eventsource&timeout=200"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert_eq!(text.matches("data: {").count(), 3, "{text}");
    assert!(text.contains("id: 4\n"));
    n.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_reports_requests_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let n = must_start(dir.path()).await;
    seed(&n).await;
    let text = n.text("/_metrics").await;
    for needle in [
        "http_requests_total",
        "http_request_duration_seconds",
        "store_update_seq{db=\"db\"} 3",
        "store_docs",
    ] {
        assert!(text.contains(needle), "missing {needle} in metrics:\n{text}");
    }
    n.stop().await;
}
