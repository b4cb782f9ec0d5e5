//! The `ncy-console` binary: serve the console until SIGTERM/SIGINT (see `ncy_console::boot`), or,
//! as `ncy-console hash-password`, turn a password read from stdin into the argon2 PHC hash the
//! users file takes.
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use ncy_runtime::settings::CONFIG_EXIT_CODE;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => ncy_console::boot::serve_process(),
        Some("hash-password") if args.len() == 1 => hash_password(),
        Some(_) => {
            eprintln!(
                "usage: ncy-console                 serve (settings from NCY_CONSOLE_* variables)\n       ncy-console hash-password   read a password on stdin, print its argon2 hash"
            );
            ExitCode::from(CONFIG_EXIT_CODE)
        }
    }
}

/// Reads one line (the password; only the line ending is removed) and prints its hash.
fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (shown as typed; pipe it in to keep it off the screen): ");
    }
    let mut input = String::new();
    if let Err(e) = stdin.lock().read_line(&mut input) {
        eprintln!("ncy-console: cannot read the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = input.lines().next().unwrap_or_default();
    if password.is_empty() {
        eprintln!("ncy-console: empty password");
        return ExitCode::from(CONFIG_EXIT_CODE);
    }
    match ncy_console::users::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ncy-console: cannot hash the password: {e}");
            ExitCode::FAILURE
        }
    }
}
