//! The HTTP router and query parser: any request line routes to an endpoint or to a
//! CouchDB error, never a panic, and never a server error for a client's bad input.
#![no_main]

use libfuzzer_sys::fuzz_target;

const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS", "PATCH"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(method) = hyper::Method::from_bytes(METHODS[m as usize % METHODS.len()].as_bytes()) else {
        return;
    };
    let Ok(uri) = hyper::Uri::try_from(rest) else { return };
    if let Err((error, reason)) = server::fuzzing::route(&method, &uri) {
        assert!(!error.is_empty() && !reason.is_empty(), "an error without a name or reason");
        assert_ne!(error, "internal_server_error", "{reason}");
    }
});
