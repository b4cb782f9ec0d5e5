//! Shared harness of the `ncyctl` process tests: the real services started in this process on port 0
//! (one Redis key prefix and one fresh database per test), and `ncyctl` run as a child process the
//! way an operator runs it, with its exit code, stdout and stderr.

use std::{net::SocketAddr, time::Duration};

use ncy_testkit::{InProcess, TestDatabase, env_of, service_env, set_env, unique_prefix};

/// The HS256 key the realtime gateway of a test stack verifies tokens with.
pub const JWT_SECRET: &str = "ncyctl-test-secret-ncyctl-test-secret";
/// Longest one `ncyctl` invocation may take before the test fails (a hang is a bug).
const NCYCTL_DEADLINE: Duration = Duration::from_secs(60);

/// One test's environment: a migrated database and a Redis prefix no other test uses.
pub struct Stack {
    pub db: TestDatabase,
    pub prefix: String,
    pub env: Vec<(String, String)>,
}

/// A service running in this process.
pub struct Service {
    /// Its gRPC address as `ncyctl --addr` takes it.
    pub url: String,
    pub websocket: Option<SocketAddr>,
    running: InProcess,
}

impl Service {
    pub async fn stop(self) {
        self.running
            .stop(Duration::from_secs(15))
            .await
            .expect("service drains");
    }
}

macro_rules! start {
    ($krate:ident, $env:expr) => {{
        let settings = $krate::Settings::load(&env_of($env)).expect("settings");
        let app = $krate::Application::build(settings).await.expect("build");
        let addrs = app.local_addrs();
        let running = InProcess::serving(addrs.grpc, |stop| app.run_until_stopped(stop)).await;
        Service {
            url: format!("http://{}", addrs.grpc),
            websocket: addrs.websocket,
            running,
        }
    }};
}

impl Stack {
    /// A fresh database and prefix; the test job types (`sleep`, `fail`) on, no default schedules.
    pub async fn new() -> Self {
        let db = TestDatabase::migrated().await.expect("test database");
        let prefix = unique_prefix();
        let mut env = service_env(&prefix, Some(&db.url));
        set_env(&mut env, "NCY_JOBS_TEST_JOB_TYPES", "true");
        set_env(&mut env, "NCY_CRON_INSTALL_DEFAULTS", "false");
        set_env(&mut env, "JWT_SECRET", JWT_SECRET);
        set_env(&mut env, "NCY_WS_ADDR", "127.0.0.1:0");
        Self { db, prefix, env }
    }

    pub async fn scheduler(&self) -> Service {
        start!(job_scheduler, &self.env)
    }

    pub async fn worker(&self) -> Service {
        start!(worker, &self.env)
    }

    pub async fn cache(&self) -> Service {
        start!(cache_gateway, &self.env)
    }

    pub async fn realtime(&self) -> Service {
        start!(realtime_gateway, &self.env)
    }
}

/// What an operator sees after one `ncyctl` run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    args: String,
}

impl Run {
    /// Asserts exit code 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "ncyctl {} failed: {self:#?}", self.args);
        &self.stdout
    }

    /// Asserts exit code 0 and that stdout is exactly one JSON document; returns it.
    pub fn json(&self) -> serde_json::Value {
        let out = self.ok();
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("ncyctl {} printed invalid JSON ({e}): {out}", self.args))
    }

    /// Asserts exit code `code` and that stderr mentions every one of `needles`.
    pub fn fails(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "ncyctl {} exit code: {self:#?}",
            self.args
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "ncyctl {} stderr lacks {needle:?}: {self:#?}",
                self.args
            );
        }
        self
    }
}

/// Runs `ncyctl args…` as a child process with none of the address variables of the test's own
/// environment, and waits for it to exit.
pub async fn ncyctl(args: &[&str]) -> Run {
    ncyctl_with(args, &[]).await
}

/// `ncyctl args… --addr URL` (`--addr` belongs to each command group, so it goes after the group).
pub async fn ctl(url: &str, args: &[&str]) -> Run {
    ncyctl(&[args, &["--addr", url]].concat()).await
}

/// `ncyctl --json args… --addr URL`, parsed.
pub async fn json(url: &str, args: &[&str]) -> serde_json::Value {
    ncyctl(&[&["--json"], args, &["--addr", url]].concat())
        .await
        .json()
}

/// [`ncyctl`] with extra environment variables.
pub async fn ncyctl_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    run(args, env, None).await
}

/// [`ncyctl`] with `input` on its standard input, then end of file.
pub async fn ncyctl_input(args: &[&str], input: &str) -> Run {
    run(args, &[], Some((input, true))).await
}

/// [`ncyctl`] with `input` on its standard input, which then stays open (a terminal nobody types in).
pub async fn ncyctl_open_input(args: &[&str], input: &str) -> Run {
    run(args, &[], Some((input, false))).await
}

async fn run(args: &[&str], env: &[(&str, &str)], input: Option<(&str, bool)>) -> Run {
    use tokio::io::AsyncWriteExt;

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ncyctl"));
    cmd.args(args).kill_on_drop(true);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
    for var in [
        "NCY_ADDR",
        "NCY_CACHE_ADDR",
        "NCY_SCHEDULER_ADDR",
        "NCY_REALTIME_ADDR",
        "DATABASE_URL",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start ncyctl");
    // Held open (when `close` is false) until ncyctl has exited: dropping the sender ends the writer.
    let (exited, wait_exit) = tokio::sync::oneshot::channel::<()>();
    if let (Some((input, close)), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_owned();
        tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
            if !close {
                let _ = wait_exit.await;
            }
        });
    }
    let out = tokio::time::timeout(NCYCTL_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("ncyctl {args:?} still running after {NCYCTL_DEADLINE:?}"))
        .expect("run ncyctl");
    drop(exited);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        args: args.join(" "),
    }
}

/// The first whitespace-separated word of `text` (an id `ncyctl` printed).
pub fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
