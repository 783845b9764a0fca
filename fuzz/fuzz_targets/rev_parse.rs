//! Revision strings (`N-hex`): what parses prints back to something that parses to
//! the same revision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::Rev;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rev) = text.parse::<Rev>() {
        assert!(rev.generation() >= 1 && rev.generation() <= store::MAX_GENERATION);
        let printed = rev.to_string();
        assert_eq!(printed.parse::<Rev>().ok(), Some(rev), "{text:?} -> {printed:?}");
    }
});
