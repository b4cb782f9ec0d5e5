//! Running services under test: in-process with a stop handle, or as a real child process that
//! receives a real SIGTERM.
use std::{
    fmt::Display,
    future::Future,
    pin::Pin,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use tokio::{sync::oneshot, task::JoinHandle};

/// The shutdown future handed to `run_until_stopped`.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service running in this process.
pub struct InProcess {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), String>>,
}

impl InProcess {
    /// Spawns `run(stop_signal)`, e.g. `InProcess::spawn(|stop| app.run_until_stopped(stop))`.
    pub fn spawn<F, Fut, E>(run: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let signal: StopSignal = Box::pin(async move {
            let _ = rx.await;
        });
        let future = run(signal);
        let handle = tokio::spawn(async move { future.await.map_err(|e| e.to_string()) });
        Self {
            stop: Some(tx),
            handle,
        }
    }

    /// [`InProcess::spawn`], then waits until the service's gRPC health at `grpc` is SERVING.
    pub async fn serving<F, Fut, E>(grpc: std::net::SocketAddr, run: F) -> Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let running = Self::spawn(run);
        crate::wait_until_serving(grpc).await;
        running
    }

    /// Whether the service is still running (it has not returned or panicked on its own).
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Signals shutdown and waits for `run_until_stopped` to return, which must be `Ok` within `within`.
    pub async fn stop(mut self, within: Duration) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(within, &mut self.handle).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(format!("service task panicked: {join}")),
            Err(_) => Err(format!("service did not stop within {within:?}")),
        }
    }
}

/// A service binary running as a child process.
pub struct ChildService {
    child: Child,
}

impl ChildService {
    /// Starts `binary` with exactly `env` (plus PATH), output discarded.
    pub fn start(binary: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self { child })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (a crash: no drain, nothing flushed) and reap the child.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM (as Kubernetes does) and waits for the exit status.
    pub async fn terminate(mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "pid {pid} did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `binary` with exactly `env` and returns (exit code, stderr).
pub fn run_to_exit(
    binary: &str,
    env: &[(String, String)],
) -> anyhow::Result<(Option<i32>, String)> {
    let output = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The checks every service binary must pass as a process:
/// - started without `missing_var` it exits 64 with one stderr line naming the variable;
/// - started with `env`, it becomes SERVING on `grpc_port`, and SIGTERM makes it exit 0.
pub async fn assert_binary_lifecycle(
    binary: &str,
    env: &[(String, String)],
    missing_var: &str,
    grpc_port: u16,
) {
    let without: Vec<_> = env
        .iter()
        .filter(|(k, _)| k != missing_var)
        .cloned()
        .collect();
    let (code, stderr) = run_to_exit(binary, &without).expect("run binary");
    assert_eq!(
        code,
        Some(64),
        "exit code without {missing_var}; stderr: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(missing_var),
        "names {missing_var}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let child = ChildService::start(binary, env).expect("start binary");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port));
    crate::wait_until_serving(addr).await;
    let status = child
        .terminate(Duration::from_secs(15))
        .await
        .expect("terminate");
    assert!(status.success(), "clean exit on SIGTERM, got {status}");
    assert!(
        crate::grpc_health(addr, "").await.is_err(),
        "port closed after exit"
    );
}
