//! One listener for every protocol: each accepted TCP connection speaks HTTP/1.1 or HTTP/2 (h2c
//! with prior knowledge, as gRPC clients do), detected from its first bytes, with upgrades (the
//! WebSocket route) allowed. gRPC, gRPC-Web and the JSON routes are one router behind it.
//!
//! tonic's own `Server` cannot serve HTTP/1.1 upgrades, so connections are served here with
//! hyper-util's builder, set the way the gRPC server was: TCP_NODELAY and TCP keepalive (tonic's
//! `TcpIncoming`), HTTP/2 windows, stream limit, keepalive pings and reset-stream limits.
//!
//! Closing: when `stop` completes the listener stops accepting and asks every connection to close
//! gracefully (HTTP/2 GOAWAY; HTTP/1.1 closes after the response in flight), while `sessions`
//! (upgraded connections, which hyper no longer tracks) are told to close too. A client that
//! stopped reading never lets its last frames drain, so after `close_timeout` whatever is still
//! open is dropped.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::config::Limits;

/// How long an HTTP/1.1 client may take to send a request's headers (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections that outlive their HTTP exchange (WebSockets): told to close with the rest, and
/// waited for within the same close timeout.
#[derive(Clone, Default)]
pub(crate) struct Sessions {
    /// Cancelled when the server closes: sessions say goodbye and end.
    pub(crate) closing: CancellationToken,
    /// Cancelled when the close timeout passed: sessions end at once.
    pub(crate) stopped: CancellationToken,
    pub(crate) tracker: tokio_util::task::TaskTracker,
}

/// The HTTP/2 (and HTTP/1.1) settings of every connection.
fn connection_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Windows: 1 MiB per stream and 16 MiB per connection let a fast tool stream without
        // waiting for window updates, while the per-run log (not h2) bounds memory.
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_concurrent_streams(limits.max_concurrent_streams)
        // Keepalive pings find dead peers (a vanished client must not hold a run forever).
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        // Clients that open many streams and reset them quickly are normal here (cancel).
        .max_pending_accept_reset_streams(Some(1024))
        .max_local_error_reset_streams(None);
    builder
}

/// Serves `app` on the connections of `incoming` until `stop` completes, then closes them (see
/// the module doc). Returns whether everything closed within `close_timeout`.
pub(crate) async fn serve(
    incoming: TcpIncoming,
    app: axum::Router,
    limits: &Limits,
    sessions: Sessions,
    stop: impl Future<Output = ()>,
    close_timeout: Duration,
) -> bool {
    let builder = connection_builder(limits);
    let graceful = GracefulShutdown::new();
    let mut incoming = std::pin::pin!(incoming);
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    // Out of file descriptors, a connection reset before accept: the listener
                    // goes on (TcpIncoming already waits a moment on resource errors).
                    tracing::debug!(%error, "cannot accept a connection");
                    continue;
                }
                None => break,
            },
        };
        let service = TowerToHyperService::new(app.clone().into_service::<Incoming>());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let stopped = sessions.stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                }
                () = stopped.cancelled() => {}
            }
        });
    }

    sessions.closing.cancel();
    sessions.tracker.close();
    let closed = async {
        graceful.shutdown().await;
        sessions.tracker.wait().await;
    };
    let in_time = tokio::time::timeout(close_timeout, closed).await.is_ok();
    if !in_time {
        tracing::warn!(
            timeout_secs = close_timeout.as_secs(),
            "connections did not close in time (a client stopped reading); closing them"
        );
    }
    // Whatever is still open (connections, WebSocket sessions) ends now.
    sessions.stopped.cancel();
    in_time
}
