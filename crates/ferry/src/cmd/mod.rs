//! Subcommands of the `ferry` binary, one module each. Each exposes `Args` (clap) and
//! `run(Args) -> anyhow::Result<ExitCode>`.

pub mod bench;
pub mod control;
pub mod demo;
mod demo_single;
pub mod doctor;
pub mod host;
pub mod image;
pub mod local;
pub mod migrate;
pub mod pki;
pub mod progress;
pub mod ran;
pub mod testbed;

/// Logs go to stderr; `RUST_LOG` filters them (default: `default_level`).
pub fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGINT or SIGTERM. The handlers are installed here, when called, not when the
/// future is first polled: a server may serve its first request before it polls its shutdown
/// future, and a SIGTERM in between would otherwise kill the process outright.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            // Without handlers there is nothing to wait for: the default actions stop us.
            _ => std::future::pending().await,
        }
        tracing::info!("shutting down");
    }
}
