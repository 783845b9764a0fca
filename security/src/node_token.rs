//! Node tokens: how fleet nodes prove who they are to each other when there is no TLS
//! (a loopback fleet, where every node reads the same secrets file).
//!
//! A node token is `sfn.<base64url identity URI>.<base64url HMAC-SHA256>`, keyed with the
//! secrets file's `[cookie] secret` under a label of its own, so it can never be mistaken
//! for a cookie. Any node holding the file can mint the token of any identity, which is
//! exactly the trust a shared secrets file expresses; with TLS, certificates take its
//! place and carry a per-node key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proto::tls::Identity;

use crate::cookie::CookieAuthority;

/// Prefix that tells a node token from an app's bearer token.
pub const NODE_TOKEN_PREFIX: &str = "sfn.";
/// Domain separation from cookie MACs.
const LABEL: &[u8] = b"sessionfleet node token v1\0";

/// What the MAC covers: the label, then the identity URI.
fn signed(uri: &str) -> Vec<u8> {
    let mut data = LABEL.to_vec();
    data.extend_from_slice(uri.as_bytes());
    data
}

fn tag(authority: &CookieAuthority, uri: &str) -> Vec<u8> {
    authority.tag(&signed(uri))
}

/// The token standing for `identity`.
pub(crate) fn mint(authority: &CookieAuthority, identity: &Identity) -> String {
    let uri = identity.to_uri();
    format!(
        "{NODE_TOKEN_PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(uri.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag(authority, &uri))
    )
}

/// The identity a token stands for, if its MAC matches (in constant time).
pub(crate) fn verify(authority: &CookieAuthority, token: &str) -> Option<Identity> {
    let rest = token.strip_prefix(NODE_TOKEN_PREFIX)?;
    let (uri, mac) = rest.split_once('.')?;
    let uri = String::from_utf8(URL_SAFE_NO_PAD.decode(uri).ok()?).ok()?;
    let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
    if !authority.verify_tag(&signed(&uri), &mac) {
        return None;
    }
    Identity::parse_uri(&uri).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let a = CookieAuthority::new(vec![3; 32], 600);
        let spoke = Identity::spoke("eu", "n1").unwrap();
        let t = mint(&a, &spoke);
        assert!(t.starts_with(NODE_TOKEN_PREFIX));
        assert_eq!(verify(&a, &t), Some(spoke.clone()));
        // Another secret, another identity under the same MAC, junk.
        assert_eq!(verify(&CookieAuthority::new(vec![4; 32], 600), &t), None);
        let other = Identity::spoke("us", "n1").unwrap();
        let mac = t.rsplit_once('.').unwrap().1;
        let forged = format!(
            "{NODE_TOKEN_PREFIX}{}.{mac}",
            URL_SAFE_NO_PAD.encode(other.to_uri())
        );
        assert_eq!(verify(&a, &forged), None);
        for junk in ["", "sfn.", "sfn..", "sfn.!!.!!", "sft_abc"] {
            assert_eq!(verify(&a, junk), None, "{junk}");
        }
        // A cookie MAC over the same bytes is not a node token's.
        assert_ne!(a.tag(spoke.to_uri().as_bytes()), tag(&a, &spoke.to_uri()));
    }
}
