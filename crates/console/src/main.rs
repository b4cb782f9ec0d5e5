//! The `ncy-console` binary: serve the console until SIGTERM/SIGINT, or, as
//! `ncy-console hash-password`, turn a password read from stdin into the argon2 PHC hash the
//! users file takes.
//!
//! It boots as `ncy_runtime::run_main` does (bad settings: one line on stderr naming the
//! variable, exit 64), but from the console's own settings: `run_main` needs the shared block,
//! which requires `REDIS_URL`, and the console has no Redis.
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use ncy_runtime::settings::CONFIG_EXIT_CODE;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("hash-password") if args.len() == 1 => hash_password(),
        Some(_) => {
            eprintln!(
                "usage: ncy-console                 serve (settings from NCY_CONSOLE_* variables)\n       ncy-console hash-password   read a password on stdin, print its argon2 hash"
            );
            ExitCode::from(CONFIG_EXIT_CODE)
        }
    }
}

fn serve() -> ExitCode {
    let service = console::SERVICE;
    let settings = match console::Settings::load(&ncy_runtime::Env::process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{service}: configuration error: {e}");
            return ExitCode::from(CONFIG_EXIT_CODE);
        }
    };
    let mut builder = match settings.runtime_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = ncy_runtime::telemetry::init(service, &settings.telemetry);
        // Handlers first: a SIGTERM during start-up or right after the port opens drains.
        let stop = ncy_runtime::shutdown::signal();
        let served = match console::Application::build(settings).await {
            Ok(app) => app.run_until_stopped(stop).await,
            Err(e) => Err(e),
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "{service} failed");
                eprintln!("{service}: {e}");
                ExitCode::FAILURE
            }
        }
    })
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
    match console::users::hash_password(password) {
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
