//! A real node on 127.0.0.1 ephemeral ports, with a real RocksDB directory.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use server::{Node, NodeHandle, ServerConfig};
use store::{Durability, Store, StoreOptions};

pub struct TestNode {
    pub node: Option<NodeHandle>,
    pub store: Store,
    pub base: String,
    pub grpc: SocketAddr,
    pub http: reqwest::Client,
}

pub async fn must_start(dir: &Path) -> TestNode {
    must_start_with(dir, |_| {}).await
}

pub async fn must_start_with(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestNode {
    let opts = StoreOptions {
        durability: Durability::Buffered,
        sweep_interval: None,
        cache_bytes: 8 << 20,
        max_document_size: 64 << 10,
        ..StoreOptions::default()
    };
    let store = Store::open(dir, opts).expect("open store");
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
    config.limits.max_body_bytes = 256 << 10;
    config.limits.max_bulk_docs = 100;
    config.limits.body_timeout = std::time::Duration::from_secs(2);
    config.limits.header_timeout = std::time::Duration::from_secs(2);
    tweak(&mut config);
    let node = Node::start(store.clone(), config).await.expect("start node");
    TestNode {
        base: format!("http://{}", node.http_addr),
        grpc: node.grpc_addr,
        node: Some(node),
        store,
        http: reqwest::Client::new(),
    }
}

impl TestNode {
    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown().await;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    }

    /// GET `path` and return the body as text.
    pub async fn text(&self, path: &str) -> String {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request and returns status and JSON body (Null if not JSON).
    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn must(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, v) = self.req(method, path, body).await;
        assert_eq!(status, want, "{method} {path} -> {v}");
        v
    }

    pub async fn raw(&self, method: &str, path: &str, body: &'static [u8]) -> (u16, Value) {
        let resp = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
