//! `sessionfleet secrets`: create a secrets file, add users and tokens to it. Only
//! hashes are stored; a new password or token is printed once, on stdout, for the
//! operator to hand to whoever needs it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use security::compose::{append, token_entry, user_entry, SecretsFile};
use security::secrets::DEFAULT_ITERATIONS;
use security::Role;

/// `sessionfleet secrets` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum SecretsCommand {
    /// Create a secrets file (mode 0600) with an admin user and a cookie secret,
    /// and print the admin's new password.
    Init(InitArgs),
    /// Add a user (HTTP Basic, `POST /_session`): the password comes from stdin
    /// with --password-stdin, else a random one is printed.
    User(UserArgs),
    /// Add a bearer token (apps, replicators, ops tools) and print it.
    Token(TokenArgs),
}

/// `secrets init` flags.
#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// The file to create (never replaced).
    file: PathBuf,
    /// The admin user's name.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// PBKDF2 iterations of the password hash.
    #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// `secrets user` flags.
#[derive(Args, Debug)]
pub(crate) struct UserArgs {
    /// The secrets file to add to.
    file: PathBuf,
    /// The user's name.
    name: String,
    /// Roles: app, replicator, admin, ops (repeatable).
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
    /// Read the password from stdin (one line) instead of generating one.
    #[arg(long)]
    password_stdin: bool,
    /// PBKDF2 iterations of the password hash.
    #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
    iterations: u32,
}

/// `secrets token` flags.
#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// The secrets file to add to.
    file: PathBuf,
    /// The token's name (shown as the caller's name, e.g. "app-eu-west").
    name: String,
    /// Roles: app, replicator, admin, ops (repeatable).
    #[arg(long = "role", required = true)]
    roles: Vec<Role>,
}

fn random_password() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

pub(crate) fn run(cmd: SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Init(a) => {
            let password = random_password();
            SecretsFile::new()
                .user(&a.admin, &password, &[Role::Admin], a.iterations)
                .write(&a.file)
                .with_context(|| format!("creating {}", a.file.display()))?;
            eprintln!(
                "created {} with user {:?}; its password:",
                a.file.display(),
                a.admin
            );
            println!("{password}");
        }
        SecretsCommand::User(a) => {
            let (password, generated) = if a.password_stdin {
                let mut line = String::new();
                std::io::stdin().read_to_string(&mut line)?;
                let p = line.trim_end_matches(['\r', '\n']).to_owned();
                anyhow::ensure!(!p.is_empty(), "the password on stdin is empty");
                (p, false)
            } else {
                (random_password(), true)
            };
            append(&a.file, &user_entry(&a.name, &password, &a.roles, a.iterations))?;
            eprintln!("added user {:?} to {}", a.name, a.file.display());
            if generated {
                println!("{password}");
            }
        }
        SecretsCommand::Token(a) => {
            let (token, entry) = token_entry(&a.name, &a.roles);
            append(&a.file, &entry)?;
            eprintln!(
                "added token {:?} to {}; the token (shown once):",
                a.name,
                a.file.display()
            );
            println!("{token}");
        }
    }
    Ok(())
}
