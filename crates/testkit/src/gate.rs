//! A TCP gate of the test's own in front of a real server: while open it relays every connection on
//! its port to the server; closed, nothing listens there and the connections it relayed are cut.
//! An outage without stopping the server, so the server keeps its state (a bucket, a database) and
//! comes back exactly as it was, with no window in which it answers but is not set up yet.
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// See the module documentation. Closed when dropped.
pub struct TcpGate {
    /// Its port on 127.0.0.1: point the service under test here.
    pub port: u16,
    upstream: SocketAddr,
    open: Option<CancellationToken>,
}

impl TcpGate {
    /// A gate to `upstream` on a free port, open.
    pub async fn open_to(upstream: SocketAddr) -> anyhow::Result<Self> {
        let mut gate = Self::closed_to(upstream);
        gate.open().await?;
        Ok(gate)
    }

    /// A gate to `upstream` on a free port, closed: the server is unreachable until [`open`].
    ///
    /// [`open`]: TcpGate::open
    pub fn closed_to(upstream: SocketAddr) -> Self {
        Self {
            port: crate::free_port(),
            upstream,
            open: None,
        }
    }

    /// Opens the gate (again) on its port.
    pub async fn open(&mut self) -> anyhow::Result<()> {
        if self.open.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await?;
        let stop = CancellationToken::new();
        tokio::spawn(relay(listener, self.upstream, stop.clone()));
        self.open = Some(stop);
        Ok(())
    }

    /// Closes the gate: new connections are refused and the relayed ones cut.
    pub fn close(&mut self) {
        if let Some(stop) = self.open.take() {
            stop.cancel();
        }
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.close();
    }
}

async fn relay(listener: TcpListener, upstream: SocketAddr, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        });
    }
}
