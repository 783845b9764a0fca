//! Authentication and roles on real `sessionfleet` processes: no admin party, CouchDB's
//! 401/403 answers and `/_session` cookies, gRPC's `UNAUTHENTICATED`/`PERMISSION_DENIED`,
//! node tokens between a spoke and its hub, failed logins slowed down, first-start
//! credentials, a secrets file re-read without a restart, and no secret in any log.

mod support;

use std::time::{Duration, Instant};

use proto::v1::replication_client::ReplicationClient;
use proto::v1::{DbInfoRequest, GetRequest, PutRequest};
use serde_json::json;
use support::*;
use tonic::Code;

const DB: &[&str] = &["--database", "sessions"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_needs_its_role_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let base = hub.base();
    let s = secrets();
    let (admin, app, ops, replicator, anonymous) = (
        Http::default(),
        Http::bearer(&s.app_token),
        Http::bearer(&s.ops_token),
        Http::bearer(&s.replicator_token),
        Http::anonymous(),
    );

    // Public: the welcome line and the health check.
    anonymous.must("GET", &format!("{base}/"), None, 200).await;
    anonymous.must("GET", &format!("{base}/_up"), None, 200).await;

    // Anonymous writes and database creation: 401, CouchDB's body, WWW-Authenticate.
    let r = reqwest::Client::new()
        .put(format!("{base}/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some(), "{:?}", r.headers());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized", "{body}");

    admin.must("PUT", &format!("{base}/sessions"), None, 201).await;
    let doc = format!("{base}/sessions/s1");
    let v = anonymous.must("PUT", &doc, Some(json!({"u": 1})), 401).await;
    assert_eq!(v["error"], "unauthorized");
    let rev = app.must("PUT", &doc, Some(json!({"u": 1})), 201).await["rev"].clone();
    assert_eq!(app.must("GET", &doc, None, 200).await["u"], 1);

    // The app may not delete a database, run replications, compact or read the metrics.
    let v = app.must("DELETE", &format!("{base}/sessions"), None, 403).await;
    assert_eq!(v["error"], "forbidden", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("app-token"), "{v}");
    app.must("POST", &format!("{base}/_replicate"), Some(json!({})), 403)
        .await;
    app.must("POST", &format!("{base}/sessions/_compact"), None, 403)
        .await;
    app.must("GET", &format!("{base}/_metrics"), None, 403).await;
    app.must("GET", &format!("{base}/sessions/_changes"), None, 403)
        .await;
    app.must("GET", &format!("{base}/_replicator/x"), None, 403).await;

    // Ops reads the node's figures and nothing else.
    assert!(ops
        .text(&format!("{base}/_metrics"))
        .await
        .contains("http_requests_total"));
    ops.must("GET", &format!("{base}/_active_tasks"), None, 200).await;
    ops.must("GET", &format!("{base}/_fleet/status"), None, 200).await;
    ops.must("GET", &doc, None, 403).await;

    // The replicator reads changes and writes with new_edits=false, but is no admin.
    replicator
        .must("GET", &format!("{base}/sessions/_changes"), None, 200)
        .await;
    replicator.must("GET", &doc, None, 200).await;
    replicator
        .must("DELETE", &format!("{base}/sessions"), None, 403)
        .await;

    // Wrong credentials are refused, not treated as anonymous.
    Http::bearer("sft_not-a-token").must("GET", &doc, None, 401).await;
    Http::basic("admin", "wrong").must("GET", &doc, None, 401).await;
    let v = anonymous
        .with_authorization(Some("Digest x".into()))
        .must("GET", &doc, None, 401)
        .await;
    assert_eq!(v["error"], "unauthorized");

    // Basic credentials as CouchDB 3 users send them; the admin may delete the database.
    let basic = Http::basic("admin", &s.admin_password);
    basic.must("GET", &doc, None, 200).await;
    app.must(
        "DELETE",
        &format!("{doc}?rev={}", rev.as_str().unwrap()),
        None,
        200,
    )
    .await;
    basic.must("DELETE", &format!("{base}/sessions"), None, 200).await;
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_work_as_couchdb_s() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let base = hub.base();
    let s = secrets();
    Http::default()
        .must("PUT", &format!("{base}/sessions"), None, 201)
        .await;
    let plain = reqwest::Client::new();

    let r = plain
        .post(format!("{base}/_session"))
        .json(&json!({"name": "admin", "password": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // A form body, as browsers and Fauxton send it.
    let r = plain
        .post(format!("{base}/_session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=admin&password={}", s.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("AuthSession=") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["ok"].clone(), body["name"].clone()),
        (json!(true), json!("admin"))
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    // The cookie authenticates writes and GET /_session says who it is.
    let r = plain
        .put(format!("{base}/sessions/by-cookie"))
        .header("cookie", &cookie)
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let me: serde_json::Value = plain
        .get(format!("{base}/_session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["userCtx"]["name"], "admin", "{me}");
    assert!(
        me["userCtx"]["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("_admin")),
        "{me}"
    );
    assert_eq!(me["info"]["authenticated"], "cookie");
    let anon = Http::anonymous()
        .must("GET", &format!("{base}/_session"), None, 200)
        .await;
    assert_eq!(anon["userCtx"]["name"], serde_json::Value::Null);

    // A forged cookie is ignored: the caller is anonymous, so the write is refused.
    let r = plain
        .put(format!("{base}/sessions/forged"))
        .header("cookie", "AuthSession=YWRtaW46NjU1M0YxMDA6AAAA")
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // DELETE /_session clears the cookie.
    let r = plain
        .delete(format!("{base}/_session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_need_a_token_or_certificate_with_the_right_role() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    let spoke = must_start_spoke(dirs[1].path(), hub.grpc, "eu-west", DB);
    let s = secrets();
    let mut c = sessions(&spoke).await;
    let get = || GetRequest {
        db: "sessions".into(),
        id: "g1".into(),
    };
    let code = |r: Result<tonic::Response<_>, tonic::Status>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        code(c.get(grpc_request(get(), None)).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(c.get(grpc_request(get(), Some("Bearer sft_wrong"))).await),
        Code::Unauthenticated
    );
    let basic = format!("Basic {}", base64_of(&format!("admin:{}", s.admin_password)));
    let refused = c.get(grpc_request(get(), Some(&basic))).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("bearer token"), "{refused:?}");
    let ops = format!("Bearer {}", s.ops_token);
    assert_eq!(
        code(c.get(grpc_request(get(), Some(&ops))).await),
        Code::PermissionDenied
    );

    let app = format!("Bearer {}", s.app_token);
    let put = PutRequest {
        db: "sessions".into(),
        id: "g1".into(),
        rev: String::new(),
        body: br#"{"u":"grpc"}"#.to_vec().into(),
    };
    c.put(grpc_request(put, Some(&app))).await.unwrap();
    let got = c.get(grpc_request(get(), Some(&app))).await.unwrap().into_inner();
    assert!(got.session.is_some());

    // Replication: an app token may not; the spoke (with its node token) does.
    let mut r = ReplicationClient::connect(format!("http://{}", hub.grpc))
        .await
        .unwrap();
    let info = || DbInfoRequest {
        db: "sessions".into(),
        ..Default::default()
    };
    assert_eq!(
        r.db_info(grpc_request(info(), Some(&app)))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        r.db_info(grpc_request(info(), None)).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    r.db_info(grpc_request(
        info(),
        Some(&format!("Bearer {}", s.replicator_token)),
    ))
    .await
    .unwrap();
    let http = Http::default();
    must_eventually(
        "the spoke's write replicated to the hub",
        Duration::from_secs(20),
        || {
            let (h, url) = (http.clone(), format!("{}/sessions/g1", hub.base()));
            async move { h.req("GET", &url, None).await.0 == 200 }
        },
    )
    .await;
    hub.kill();
    spoke.kill();
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoke_with_another_fleet_s_secrets_cannot_replicate() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = Proc::must_start_hub(dirs[0].path());
    // The spoke's own (generated) secrets: its node token means nothing to the hub.
    let other = dirs[2].path().join("secrets.toml");
    let mut f = security::compose::SecretsFile::new();
    f.user("admin", "x", &[security::Role::Admin], 10);
    f.write(&other).unwrap();
    let other = other.display().to_string();
    let spoke = must_start_spoke(
        dirs[1].path(),
        hub.grpc,
        "eu-west",
        &["--database", "sessions", "--secrets", &other],
    );
    let ops = Http::bearer(&secrets().ops_token);
    let url = format!("{}/_metrics", hub.base());
    must_eventually(
        "the hub counts the refused node token",
        Duration::from_secs(20),
        || {
            let (h, url) = (ops.clone(), url.clone());
            async move {
                h.text(&url).await.lines().any(|l| {
                    l.starts_with("sessionfleet_auth_failures_total")
                        && l.contains("bad_token")
                        && !l.ends_with(" 0")
                })
            }
        },
    )
    .await;
    let fleet = ops
        .must("GET", &format!("{}/_fleet/status", hub.base()), None, 200)
        .await;
    assert_eq!(fleet["connected_spokes"], 0, "{fleet}");
    spoke.kill();
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_from_one_address_are_slowed_down() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Proc::must_start_hub(dir.path());
    let url = format!("{}/_all_dbs", hub.base());
    let wrong = Http::basic("admin", "guess");
    // Five free failures, then 100, 200, 400, 800 ms: the tenth waits at least 1.6 s.
    for _ in 0..9 {
        wrong.must("GET", &url, None, 401).await;
    }
    let started = Instant::now();
    wrong.must("GET", &url, None, 401).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "the tenth failure took only {waited:?}"
    );
    // The right password still gets in (after the delay), and clears the count.
    Http::basic("admin", &secrets().admin_password)
        .must("GET", &url, None, 200)
        .await;
    let started = Instant::now();
    wrong.must("GET", &url, None, 401).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a success did not reset the count"
    );
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_secrets_generates_an_admin_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let (http, grpc) = (free_addr(), free_addr());
    let args: Vec<String> = [
        "hub",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--http",
        &http.to_string(),
        "--grpc",
        &grpc.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let hub = Proc::must_start_as_given(args, http, grpc, dir.path());
    use std::os::unix::fs::PermissionsExt;
    let password_file = dir.path().join("admin-password");
    for f in [dir.path().join("secrets.toml"), password_file.clone()] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let password = std::fs::read_to_string(&password_file).unwrap().trim().to_owned();
    let base = hub.base();
    Http::anonymous()
        .must("PUT", &format!("{base}/db"), None, 401)
        .await;
    Http::basic("admin", &password)
        .must("PUT", &format!("{base}/db"), None, 201)
        .await;
    let log = hub.log.lines().join("\n");
    assert!(
        log.contains("admin-password"),
        "the log does not say where: {log}"
    );
    assert!(!log.contains(&password), "the log shows the password");
    // A restart keeps the same credentials.
    let hub2 = {
        let (args, h, g) = (hub.args.clone(), hub.http, hub.grpc);
        hub.kill();
        Proc::must_start_as_given(args, h, g, dir.path())
    };
    Http::basic("admin", &password)
        .must("GET", &format!("{base}/db"), None, 200)
        .await;
    hub2.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_file_is_reread_without_a_restart_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet-secrets.toml");
    std::fs::copy(&secrets().path, &file).unwrap();
    let data = dir.path().join("data");
    let (http, grpc) = (free_addr(), free_addr());
    let args: Vec<String> = vec![
        "hub".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--http".into(),
        http.to_string(),
        "--grpc".into(),
        grpc.to_string(),
        "--secrets".into(),
        file.display().to_string(),
    ];
    let hub = Proc::must_start(args, http, grpc, &data);
    let url = format!("{}/_all_dbs", hub.base());
    let out = std::process::Command::new(BIN)
        .args([
            "secrets",
            "token",
            file.to_str().unwrap(),
            "late-ops",
            "--role",
            "ops",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let late = Http::bearer(&token);
    must_eventually("the new token accepted", Duration::from_secs(10), || {
        let (h, u) = (late.clone(), url.clone());
        async move { h.req("GET", &u, None).await.0 == 200 }
    })
    .await;
    // A broken file is refused, counted, and the secrets in force stay.
    std::fs::write(
        &file,
        "[[user]]\nname = \"x\"\npassword = \"plaintext\"\nroles = [\"admin\"]\n",
    )
    .unwrap();
    hub.signal(libc::SIGHUP);
    let ops = Http::bearer(&secrets().ops_token);
    let metrics = format!("{}/_metrics", hub.base());
    must_eventually("the bad file counted", Duration::from_secs(10), || {
        let (h, u) = (ops.clone(), metrics.clone());
        async move {
            h.text(&u)
                .await
                .lines()
                .any(|l| l.starts_with("sessionfleet_secrets_reload_failures_total") && !l.ends_with(" 0"))
        }
    })
    .await;
    late.must("GET", &url, None, 200).await;
    Http::default().must("GET", &url, None, 200).await;
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_a_metric_or_an_error() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let s = secrets();
    let debug = |role: Vec<String>, http, grpc, dir: &std::path::Path| {
        let mut args = role;
        args.extend(["--secrets".to_string(), s.path.display().to_string()]);
        Proc::must_start_with_log(args, http, grpc, dir, "debug")
    };
    let (hh, hg) = (free_addr(), free_addr());
    let hub = debug(
        vec![
            "hub".into(),
            "--data-dir".into(),
            dirs[0].path().display().to_string(),
            "--http".into(),
            hh.to_string(),
            "--grpc".into(),
            hg.to_string(),
        ],
        hh,
        hg,
        dirs[0].path(),
    );
    let (sh, sg) = (free_addr(), free_addr());
    let spoke = debug(
        vec![
            "spoke".into(),
            "--data-dir".into(),
            dirs[1].path().display().to_string(),
            "--http".into(),
            sh.to_string(),
            "--grpc".into(),
            sg.to_string(),
            "--hub".into(),
            format!("http://{hg}"),
            "--datacentre".into(),
            "eu-west".into(),
            "--database".into(),
            "sessions".into(),
        ],
        sh,
        sg,
        dirs[1].path(),
    );
    let hub_base = hub.base();
    let admin = Http::default();
    // Every kind of credential, right and wrong, over HTTP and gRPC.
    Http::basic("admin", &s.admin_password)
        .must("PUT", &format!("{hub_base}/src"), None, 201)
        .await;
    Http::basic("admin", "wrong-password-1234")
        .must("GET", &format!("{hub_base}/src"), None, 401)
        .await;
    Http::bearer("sft_wrong-token-5678")
        .must("GET", &format!("{hub_base}/src"), None, 401)
        .await;
    admin
        .must("PUT", &format!("{hub_base}/src/d1"), Some(json!({"v": 1})), 201)
        .await;
    reqwest::Client::new()
        .post(format!("{hub_base}/_session"))
        .json(&json!({"name": "admin", "password": "wrong-password-9876"}))
        .send()
        .await
        .unwrap();
    let login = reqwest::Client::new()
        .post(format!("{hub_base}/_session"))
        .json(&json!({"name": "admin", "password": s.admin_password}))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // A replication whose URL carries a password, one-shot and as a _replicator document,
    // and one whose password is wrong.
    let source = format!("http://replicator:{}@{hh}/src", s.replicator_password);
    admin
        .must(
            "POST",
            &format!("{}/_replicate", spoke.base()),
            Some(json!({"source": source, "target": "copy", "create_target": true})),
            200,
        )
        .await;
    admin
        .must(
            "PUT",
            &format!("{}/_replicator/follow", spoke.base()),
            Some(json!({"source": source, "target": "copy2", "create_target": true, "continuous": true})),
            201,
        )
        .await;
    let bad = json!({"source": format!("http://replicator:bad-replicator-pw@{hh}/src"), "target": "copy3", "create_target": true});
    let refused = admin
        .must("POST", &format!("{}/_replicate", spoke.base()), Some(bad), 401)
        .await;
    let mut c = sessions(&spoke).await;
    let _ = c
        .get(grpc_request(
            GetRequest {
                db: "sessions".into(),
                id: "x".into(),
            },
            Some("Bearer sft_wrong-grpc-token"),
        ))
        .await;
    let _ = c
        .get(grpc_request(
            GetRequest {
                db: "sessions".into(),
                id: "x".into(),
            },
            Some(&format!("Bearer {}", s.app_token)),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ops = Http::bearer(&s.ops_token);
    let mut shown = vec![refused.to_string()];
    for node in [&hub, &spoke] {
        shown.push(ops.text(&format!("{}/_metrics", node.base())).await);
        shown.push(ops.text(&format!("{}/_active_tasks", node.base())).await);
        shown.push(ops.text(&format!("{}/_fleet/status", node.base())).await);
        shown.push(node.log.lines().join("\n"));
    }
    let cookie_value = cookie.trim_start_matches("AuthSession=").to_owned();
    let cookie_secret = std::fs::read_to_string(&s.path)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("secret = \"")
                .map(|v| v.trim_end_matches('"').to_owned())
        })
        .unwrap();
    let secret_values = [
        ("admin password", s.admin_password.as_str()),
        ("replicator password", s.replicator_password.as_str()),
        ("admin token", s.admin_token.as_str()),
        ("app token", s.app_token.as_str()),
        ("wrong password", "wrong-password-1234"),
        ("wrong login password", "wrong-password-9876"),
        ("wrong token", "wrong-token-5678"),
        ("wrong gRPC token", "wrong-grpc-token"),
        ("wrong replicator password", "bad-replicator-pw"),
        ("cookie", cookie_value.as_str()),
        ("cookie secret", cookie_secret.as_str()),
        ("node token", "sfn."),
    ];
    assert!(
        shown[4].len() > 1000,
        "the debug log is suspiciously short: {}",
        shown[4]
    );
    for text in &shown {
        for (what, value) in secret_values {
            assert!(!text.contains(value), "the {what} appears in:\n{text}");
        }
    }
    spoke.kill();
    hub.kill();
}
