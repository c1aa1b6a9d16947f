//! SIGINT and SIGTERM for commands that must clean up before they end (a
//! proving server to stop, a lock to release): select on `interruption()`
//! beside the work, and the work's future is dropped when a signal comes.

/// Resolves when SIGINT or SIGTERM arrives, naming it; never if the
/// handlers cannot be installed.
pub async fn interruption() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}
