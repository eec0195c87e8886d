//! Accepting connections, within limits: at most `max_connections` open at once (past the
//! cap a new connection waits in the kernel's backlog, not in a file descriptor of ours), and a
//! connection closed when it sends no complete request head within `idle_timeout` — a slow
//! client trickling headers, or an idle keep-alive connection. Requests themselves are served
//! by the router; this module only owns connections.

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

/// File descriptors kept for everything but client connections: the database, module and
/// artifact files, the SMTP connections.
const RESERVED_FDS: u64 = 256;
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    /// These limits within what the process may open: the soft file-descriptor limit is
    /// raised to the hard one, and the cap lowered (with a warning) if even that is too few.
    pub fn fitted(self) -> Self {
        let Some(open_files) = raise_open_file_limit() else {
            return self;
        };
        let fits = usize::try_from(open_files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
        if self.max_connections <= fits {
            return self;
        }
        tracing::warn!(
            max_connections = self.max_connections,
            open_files,
            "the process may open {open_files} files: serving at most {fits} connections"
        );
        Self {
            max_connections: fits.max(1),
            ..self
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then finish the requests in flight
/// (for at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1.1: its header-read timer runs from the moment a connection opens (HTTP/2's
    // version sniffing would wait for a first byte with no timeout at all).
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors (or a connection reset before accept): back off
                    // rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        stream.set_nodelay(true).ok();
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            app.clone().call(request)
        });
        let builder = builder.clone();
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A connection ends by its client, its idle timeout or an error; all the same here.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace; closing them");
    }
    Ok(())
}

/// Raise the soft limit on open files to the hard one; the limit now, if it can be read.
fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    // SAFETY: getrlimit and setrlimit only read and set this process's resource limits
    // through a struct we own.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                ..limit
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)] // `rlim_t` is not u64 on every unix
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}
