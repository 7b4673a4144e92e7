//! Graceful shutdown: the first SIGTERM (what Docker, Swarm and Kubernetes
//! send) or SIGINT stops the listener; in-flight requests still complete.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct ShutdownSignal {
    term: Signal,
    int: Signal,
}

impl ShutdownSignal {
    /// Installs the handlers up front, so a signal that arrives while the
    /// server is still starting is not lost (and does not kill the process:
    /// as PID 1 in a container there is no default action to fall back on).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves when either signal arrives.
    pub async fn recv(mut self) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        tracing::info!(
            "{name} received: no longer accepting connections, finishing in-flight requests"
        );
    }
}
