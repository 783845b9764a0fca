//! Topology files: any text is a topology or a list of mistakes, each naming the file
//! and, when it is tied to the text, a line and column inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = topology::Topology::parse(text, "fuzz.toml") {
        assert_eq!(e.file, "fuzz.toml");
        assert!(!e.errors.is_empty(), "an error with no mistake in it");
        let lines = text.split('\n').count();
        for m in &e.errors {
            assert!(m.line <= lines, "line {} of a {lines}-line file: {m}", m.line);
            assert!(!m.message.is_empty());
        }
        assert!(e.to_string().starts_with("fuzz.toml"), "{e}");
    }
});
