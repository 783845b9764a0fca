//! Authentication on the HTTP API: who a request comes from (see [`crate::auth`] for
//! the order credentials are looked at), and CouchDB's `/_session`.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use proto::tls::Identity;
use security::{CookieAuthority, Principal, Role, COOKIE_NAME};
use serde_json::json;

use super::body::{json as json_response, read, Body};
use super::error::ApiError;
use super::router::only;
use crate::auth::{cookie, node_principal, parse_authorization, Credential, Refusal};
use crate::node::Shared;
use crate::transport::Peer;

/// CouchDB's answer to a wrong name or password.
const BAD_LOGIN: &str = "Name or password is incorrect.";

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Unauthenticated(reason) => ApiError::unauthorized(reason),
            Refusal::Forbidden(reason) => ApiError::forbidden(reason),
        }
    }
}

fn peer(req: &Request<Incoming>) -> Option<&Peer> {
    req.extensions().get::<Peer>()
}

/// The caller's address, for the failed-login throttle.
fn peer_ip(req: &Request<Incoming>) -> std::net::IpAddr {
    peer(req).map_or([0, 0, 0, 0].into(), |p| p.addr.ip())
}

/// Who sent `req`: `Ok(None)` for an anonymous caller; `Err` for credentials that are
/// present but wrong. Only called when the node has an authenticator.
pub(crate) async fn principal(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<Option<Principal>, Refusal> {
    let Some(auth) = &shared.config.auth else {
        return Ok(None);
    };
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| Refusal::Unauthenticated("the Authorization header is not text".into()))?;
        return match parse_authorization(value).map_err(|r| r.count("malformed"))? {
            Credential::Bearer(token) => match auth.node(token) {
                Some(identity) => node_principal(&shared.fleet, &identity).map(Some),
                None => auth.bearer(token).map(Some).ok_or_else(|| {
                    Refusal::Unauthenticated("the bearer token is not valid".into()).count("bad_token")
                }),
            },
            Credential::Basic(name, password) => {
                let ip = peer_ip(req);
                auth.password(ip, &name, &password)
                    .await
                    .map(Some)
                    .ok_or_else(|| Refusal::Unauthenticated(BAD_LOGIN.into()).count("bad_password"))
            }
        };
    }
    let from_cookie = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie(h, COOKIE_NAME))
        .and_then(|value| auth.cookie(value));
    if from_cookie.is_some() {
        return Ok(from_cookie);
    }
    match peer(req).and_then(|p| p.identity.as_ref()) {
        Some(identity @ Identity::Client { .. }) => Ok(Some(Principal::from_identity(identity))),
        Some(node) => node_principal(&shared.fleet, node).map(Some),
        None => Ok(None),
    }
}

/// CouchDB's `userCtx` roles: ours, plus `_admin` for admins (clients look for it).
fn user_ctx(p: Option<&Principal>) -> serde_json::Value {
    match p {
        None => json!({"name": null, "roles": []}),
        Some(p) => {
            let mut roles: Vec<&str> = Vec::new();
            if p.may(Role::Admin) {
                roles.push("_admin");
            }
            roles.extend(p.roles.iter().map(|r| r.as_str()));
            json!({"name": p.name, "roles": roles})
        }
    }
}

/// `GET`, `POST` and `DELETE /_session`.
pub(crate) async fn session(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    only(
        &method,
        &[Method::GET, Method::HEAD, Method::POST, Method::DELETE],
    )?;
    let secure = shared.transport.is_tls();
    let Some(auth) = shared.config.auth.clone() else {
        // Authentication is off (an embedded node): everyone is admin, as CouchDB's
        // old "admin party" said, and there is nothing to log in to.
        if method == Method::POST {
            return Err(ApiError::not_found(
                "authentication is not enabled on this node; use no credentials",
            ));
        }
        return Ok(json_response(
            StatusCode::OK,
            &json!({"ok": true, "userCtx": {"name": null, "roles": ["_admin"]},
                    "info": {"authentication_handlers": []}}),
        ));
    };
    match method {
        Method::DELETE => {
            let mut r = json_response(StatusCode::OK, &json!({"ok": true}));
            if let Ok(v) = HeaderValue::from_str(&CookieAuthority::clear_cookie_header(secure)) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            Ok(r)
        }
        Method::POST => {
            let ip = peer_ip(&req);
            let form = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
            let body = read(shared, req).await?;
            let (name, password) = login_fields(&body, form)?;
            let Some(p) = auth.password(ip, &name, &password).await else {
                metrics::counter!(crate::auth::AUTH_FAILURES_METRIC, "reason" => "bad_password").increment(1);
                return Err(ApiError::unauthorized(BAD_LOGIN));
            };
            let value = auth
                .issue_cookie(&p.name)
                .ok_or_else(|| ApiError::bad_request("this user name cannot be carried in a cookie"))?;
            let ctx = user_ctx(Some(&p));
            let mut r = json_response(
                StatusCode::OK,
                &json!({"ok": true, "name": ctx["name"], "roles": ctx["roles"]}),
            );
            if let Ok(v) = HeaderValue::from_str(&auth.set_cookie_header(&value, secure)) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            Ok(r)
        }
        _ => {
            let p = principal(shared, &req).await?;
            let authenticated = p.as_ref().map(|p| match p.via {
                security::AuthMethod::Cookie => "cookie",
                security::AuthMethod::Password => "default",
                security::AuthMethod::Token => "bearer",
                security::AuthMethod::Certificate => "certificate",
            });
            let mut info = json!({"authentication_handlers": ["cookie", "default", "bearer", "certificate"]});
            if let Some(a) = authenticated {
                info["authenticated"] = json!(a);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"ok": true, "userCtx": user_ctx(p.as_ref()), "info": info}),
            ))
        }
    }
}

/// `name` and `password` of a login body (JSON or a form). Errors never quote the body:
/// it holds a password.
fn login_fields(body: &[u8], form: bool) -> Result<(String, String), ApiError> {
    let missing = || ApiError::bad_request("the body must carry `name` and `password`");
    if form {
        let mut name = None;
        let mut password = None;
        for (k, v) in form_urlencoded::parse(body) {
            match &*k {
                "name" => name = Some(v.into_owned()),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        return name.zip(password).ok_or_else(missing);
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("the login body is not valid JSON"))?;
    match (v.get("name"), v.get("password")) {
        (Some(serde_json::Value::String(n)), Some(serde_json::Value::String(p))) => {
            Ok((n.clone(), p.clone()))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies_never_echo_the_password() {
        assert_eq!(
            login_fields(br#"{"name":"a","password":"p"}"#, false).unwrap(),
            ("a".into(), "p".into())
        );
        assert_eq!(
            login_fields(b"name=a%40b&password=p%26q", true).unwrap(),
            ("a@b".into(), "p&q".into())
        );
        for (body, form) in [
            (&br#"{"name":"a","password":12345678}"#[..], false),
            (&br#"{"name":"a","password":"hunter2""#[..], false),
            (&b"name=a"[..], true),
        ] {
            let e = login_fields(body, form).unwrap_err();
            assert!(
                !e.reason.contains("hunter2") && !e.reason.contains("12345678"),
                "{}",
                e.reason
            );
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
    }
}
