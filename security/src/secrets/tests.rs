//! Tests of the secrets file: hash formats with known answers, tokens, errors, Debug.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// PBKDF2-HMAC-SHA1 of "relax", salt text "6d2f…d2ac", 10 iterations (CouchDB ≤ 3.3
/// format), from Python's hashlib.pbkdf2_hmac.
const COUCH_SHA1: &str =
    "-pbkdf2-b04a446a81d4b50a29298504ec53571415c4840f,6d2fbc6d41b6f9bc4c0b0f6b5ea3d2ac,10";
/// The same with SHA-256 and 1000 iterations (CouchDB 3.4 format).
const COUCH_SHA256: &str =
    "-pbkdf2:sha256-b733431c1dfcec0ca0f21f4d0d522de19e513933bcb38b316b8ed66efb53c8cd,6d2fbc6d41b6f9bc4c0b0f6b5ea3d2ac,1000";
/// argon2id of "hunter2" from Python's argon2-cffi (m=1024, t=2, p=1).
const ARGON2: &str =
    "$argon2id$v=19$m=1024,t=2,p=1$c2Vzc2lvbmZsZWV0c2FsdA$8+XEO8wF9sJY5ahUF06NKFNe39wIHbYq9TXvrnaG04Y";
/// SHA-256 of "sft_test-token".
const TOKEN_SHA: &str = "e980aa591b1887e3ed57ff4ee4c0423f092676cf54366e6e3ce0145c64357e52";
const COOKIE_SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn file() -> String {
    format!(
        r#"
[[user]]
name = "couch-old"
password = "{COUCH_SHA1}"
roles = ["replicator"]

[[user]]
name = "admin"
password = "{COUCH_SHA256}"
roles = ["admin"]

[[user]]
name = "argon"
password = "{ARGON2}"
roles = ["ops", "app"]

[[token]]
name = "app-eu-west"
sha256 = "{TOKEN_SHA}"
roles = ["app"]

[[token]]
name = "other"
sha256 = "{}"
roles = ["ops"]

[cookie]
secret = "{COOKIE_SECRET}"
timeout_secs = 900
"#,
        "ab".repeat(32)
    )
}

fn parse(src: &str) -> Result<Secrets, SecretsError> {
    Secrets::parse(src, Path::new("/etc/sf/secrets.toml"))
}

#[test]
fn couchdb_and_argon2_hashes_verify() {
    let s = parse(&file()).unwrap();
    let p = s.verify_password("couch-old", "relax").unwrap();
    assert_eq!(
        (p.name.as_str(), p.via, p.may(Role::Replicator)),
        ("couch-old", AuthMethod::Password, true)
    );
    assert!(s.verify_password("couch-old", "relax!").is_none());
    assert!(s.verify_password("admin", "relax").unwrap().may(Role::Admin));
    assert!(s.verify_password("admin", "Relax").is_none());
    let a = s.verify_password("argon", "hunter2").unwrap();
    assert_eq!(a.roles, vec![Role::Ops, Role::App]);
    assert!(s.verify_password("argon", "hunter3").is_none());
    assert!(s.verify_password("nobody", "relax").is_none());
    assert!(s.has_admin() && s.cookie_from_file());
    assert_eq!(s.cookie().timeout_secs(), 900);
}

#[test]
fn hash_password_round_trips() {
    let h = hash_password_with("pw", 5);
    assert!(h.starts_with("-pbkdf2:sha256-") && h.ends_with(",5"), "{h}");
    let src = format!("[[user]]\nname = \"u\"\npassword = \"{h}\"\nroles = [\"app\"]\n");
    let s = parse(&src).unwrap();
    assert!(s.verify_password("u", "pw").is_some());
    assert!(s.verify_password("u", "pw2").is_none());
    assert_ne!(hash_password_with("pw", 5), h, "salts are random");
    assert!(hash_password("x").ends_with(",600000"));
}

#[test]
fn tokens_verify_by_hash() {
    let s = parse(&file()).unwrap();
    let p = s.verify_token("sft_test-token").unwrap();
    assert_eq!(
        (p.name.as_str(), p.via, p.roles.as_slice()),
        ("app-eu-west", AuthMethod::Token, &[Role::App][..])
    );
    assert!(s.verify_token("sft_test-tokeN").is_none());
    assert!(s.verify_token("").is_none());
    let (plain, sha) = new_token();
    assert!(plain.starts_with("sft_") && plain.len() > 40);
    let src = format!("[[token]]\nname = \"t\"\nsha256 = \"{sha}\"\nroles = [\"app\"]\n");
    assert_eq!(parse(&src).unwrap().verify_token(&plain).unwrap().name, "t");
}

#[test]
fn cookies_name_existing_users() {
    let s = parse(&file()).unwrap();
    let c = s.cookie().issue("admin", 5000).unwrap();
    let p = s.verify_cookie(&c, 5001).unwrap();
    assert_eq!((p.name.as_str(), p.via), ("admin", AuthMethod::Cookie));
    assert!(s.verify_cookie(&c, 5900).is_none(), "timeout_secs from the file");
    let ghost = s.cookie().issue("ghost", 5000).unwrap();
    assert!(s.verify_cookie(&ghost, 5001).is_none());
    // Without a [cookie] section the secret is random per load.
    let a = parse("").unwrap();
    assert!(!a.cookie_from_file());
    let c = a.cookie().issue("x", 1).unwrap();
    assert!(parse("").unwrap().cookie().verify(&c, 1).is_err());
}

fn err(src: &str) -> (usize, Option<String>, String) {
    match parse(src).unwrap_err() {
        SecretsError::Invalid {
            line,
            field,
            message,
            path,
        } => {
            assert_eq!(path, Path::new("/etc/sf/secrets.toml"));
            (line, field, message)
        }
        e => panic!("unexpected {e}"),
    }
}

#[test]
fn errors_name_line_and_field_never_secrets() {
    let (line, field, _) =
        err("[[user]]\nname = \"a\"\npassword = \"hunter2-plaintext\"\nroles = [\"admin\"]\n");
    assert_eq!((line, field.as_deref()), (3, Some("password")));
    let e =
        parse("[[user]]\nname = \"a\"\npassword = \"hunter2-plaintext\"\nroles = [\"admin\"]\n").unwrap_err();
    let shown = e.to_string();
    assert!(shown.starts_with("/etc/sf/secrets.toml:3: password: "), "{shown}");
    assert!(
        !shown.contains("hunter2") && !format!("{e:?}").contains("hunter2"),
        "{shown}"
    );

    let (line, field, msg) = err("[[user]]\nname = \"a\"\npassword = 12345678\nroles = [\"admin\"]\n");
    assert_eq!((line, field.as_deref()), (3, Some("password")));
    assert!(!msg.contains("12345678"), "{msg}");

    let (line, field, msg) = err("[[user]]\nname = \"a\"\npassword = \"x\"\nrole = [\"admin\"]\n");
    assert_eq!((line, field.as_deref()), (4, Some("role")), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");

    let (line, field, msg) = err("\n\n[[user]]\nname = \"a\"\nroles = [\"admin\"]\n");
    assert_eq!(field.as_deref(), Some("password"), "{msg}");
    assert!((3..=5).contains(&line), "{line}");

    let (line, field, msg) = err(&format!(
        "[[token]]\nname = \"t\"\nsha256 = \"{TOKEN_SHA}\"\nroles = [\"root\"]\n"
    ));
    assert_eq!((line, field.as_deref()), (4, Some("roles")), "{msg}");
    assert!(msg.contains("root"), "{msg}");

    let (line, field, msg) = err("[[token]]\nname = \"t\"\nsha256 = \"abcd\"\nroles = [\"app\"]\n");
    assert_eq!((line, field.as_deref()), (3, Some("sha256")));
    assert!(!msg.contains("abcd"), "{msg}");

    let (line, field, msg) = err("[cookie]\nsecret = \"00ff\"\n");
    assert_eq!((line, field.as_deref()), (2, Some("secret")));
    assert!(!msg.contains("00ff"), "{msg}");

    let (line, field, _) = err(&format!(
        "[[user]]\nname = \"a\"\npassword = \"{COUCH_SHA1}\"\nroles = [\"app\"]\n[[user]]\nname = \"a\"\npassword = \"{COUCH_SHA1}\"\nroles = [\"app\"]\n"
    ));
    assert_eq!((line, field.as_deref()), (6, Some("name")));

    let (line, field, _) = err(&format!(
        "[[user]]\nname = \"a\"\npassword = \"{COUCH_SHA1}\"\nroles = []\n"
    ));
    assert_eq!((line, field.as_deref()), (4, Some("roles")));

    let (line, field, _) = err("[extra]\nx = 1\n");
    assert_eq!((line, field.as_deref()), (1, Some("extra")));

    assert!(matches!(
        Secrets::load(Path::new("/nonexistent/secrets.toml")),
        Err(SecretsError::Io { .. })
    ));
}

#[test]
fn debug_shows_no_secret() {
    let s = parse(&file()).unwrap();
    let d = format!("{s:?}");
    for secret in [
        "b04a446a",
        "b733431c",
        "argon2id",
        TOKEN_SHA,
        COOKIE_SECRET,
        "0, 17, 34",
        "abab",
    ] {
        assert!(!d.contains(secret), "{secret} in {d}");
    }
    assert!(d.contains("app-eu-west") && d.contains("couch-old"), "{d}");
}

#[test]
fn generate_first_start_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (path, admin) = Secrets::generate_with_iterations(dir.path(), 10).unwrap();
    assert_eq!(path, dir.path().join(SECRETS_FILE));
    for p in [&path, &admin.password_file] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(&admin.password_file).unwrap().trim(),
        admin.password
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&admin.password));
    assert!(!format!("{admin:?}").contains(&admin.password));
    let s = Secrets::load(&path).unwrap();
    assert!(s.cookie_from_file());
    assert!(s
        .verify_password("admin", &admin.password)
        .unwrap()
        .may(Role::Admin));
    assert!(matches!(
        Secrets::generate_with_iterations(dir.path(), 10),
        Err(SecretsError::Exists(_))
    ));
}
