//! One listener for every protocol: each accepted TCP connection speaks HTTP/1.1 or HTTP/2 (h2c
//! with prior knowledge, as gRPC clients do), detected from its first bytes, with upgrades (the
//! WebSocket route) allowed. gRPC, gRPC-Web and the JSON routes are one router behind it.
//!
//! tonic's own `Server` cannot serve HTTP/1.1 upgrades, so connections are served here with
//! hyper-util's builder, set the way the gRPC server was: TCP_NODELAY and TCP keepalive (tonic's
//! `TcpIncoming`), HTTP/2 windows, stream limit, keepalive pings and reset-stream limits.
//!
//! TLS ([`crate::tls`]): with it, each connection's handshake runs on the connection's own task
//! (a slow or stalled client never holds up the accept loop) and is given up after the
//! handshake timeout; ALPN then says HTTP/2 or HTTP/1.1. The subject CN of a verified client
//! certificate goes into every request's extensions ([`ClientCertName`]).
//!
//! Bounds, so that clients that connect and do nothing cannot hold the server
//! (`[http] first_byte_timeout_ms`, `max_connections`):
//! - A connection must send its first byte within the first-byte timeout, or it is closed.
//!   hyper-util's protocol detection waits for the HTTP/2 preface with no timeout of its own
//!   (hyper#3756), and HTTP/1.1's header timeout only starts after it, so the deadline sits
//!   under hyper, on the stream's reads ([`FirstByteDeadline`]); over TLS it covers the first
//!   byte after the handshake (the handshake has its own timeout). Once a request came, HTTP/1.1
//!   idles under its header timeout and HTTP/2 under its keepalive pings; streams are never cut.
//! - At most `max_connections` are open at once. Each accepted connection takes a slot
//!   ([`ConnectionSlot`]) held by its task, by every request on it, and by a WebSocket session
//!   made from it (an upgraded connection is still a connection). Beyond the cap a new
//!   connection is accepted and closed at once, so the client learns right away that this
//!   server is full (a load balancer tries another) instead of waiting in the kernel's backlog,
//!   and the listener goes on accepting, so connections are refused rather than left pending.
//!   Refusals are logged at most once every [`REFUSED_LOG_INTERVAL`], with their count.
//!
//! Closing: when `stop` completes the listener stops accepting and asks every connection to close
//! gracefully (HTTP/2 GOAWAY; HTTP/1.1 closes after the response in flight), while `sessions`
//! (upgraded connections, which hyper no longer tracks) are told to close too. A client that
//! stopped reading never lets its last frames drain, so after `close_timeout` whatever is still
//! open is dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tower::ServiceExt;

use crate::config::HttpConfig;
use crate::tls::{ClientCertName, ServerTls, common_name};

/// How long an HTTP/1.1 client may take to send a request's headers (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How often, at most, refused connections are logged while the server is full.
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One of the `max_connections` slots, held by a connection's task, by each request on it (in
/// the request's extensions) and by a WebSocket session made from it: the slot is free again
/// when the last of them ends.
#[derive(Clone)]
pub(crate) struct ConnectionSlot {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// A stream whose reads fail with `TimedOut` when no byte came within a deadline of the
/// connection's start; after the first byte it is the stream itself.
struct FirstByteDeadline<S> {
    stream: S,
    /// `None` once a byte came.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        FirstByteDeadline {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client sent nothing within the first-byte timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts connections refused because the server is full, and logs them now and then.
struct Refusals {
    max_connections: usize,
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn refused(&mut self) {
        self.since_logged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= REFUSED_LOG_INTERVAL);
        if due {
            tracing::warn!(
                max_connections = self.max_connections,
                refused = self.since_logged,
                "connections refused: the server holds [http] max_connections open connections"
            );
            self.since_logged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

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
fn connection_builder(http: &HttpConfig) -> Builder<TokioExecutor> {
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
        .max_concurrent_streams(http.max_concurrent_streams)
        // Keepalive pings find dead peers (a vanished client must not hold a run forever).
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        // Clients that open many streams and reset them quickly are normal here (cancel).
        .max_pending_accept_reset_streams(Some(1024))
        .max_local_error_reset_streams(None);
    builder
}

/// What serving one accepted connection needs.
struct Connection {
    builder: Builder<TokioExecutor>,
    app: axum::Router,
    graceful: hyper_util::server::graceful::Watcher,
    stopped: CancellationToken,
    first_byte_timeout: Duration,
    slot: ConnectionSlot,
}

impl Connection {
    /// The TLS handshake, within the handshake timeout, then the connection.
    async fn handshake(self, stream: TcpStream, tls: Arc<ServerTls>) {
        let peer = stream.peer_addr().ok();
        let accepted = tokio::select! {
            accepted = tokio::time::timeout(tls.handshake_timeout(), tls.acceptor().accept(stream)) => accepted,
            () = self.stopped.cancelled() => return,
        };
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(?peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake timed out; connection closed");
                return;
            }
        };
        let client_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(common_name)
            .map(ClientCertName);
        self.serve(stream, client_cert).await;
    }

    /// HTTP/1.1 or HTTP/2 on `stream` until it closes, the server closes it, or the close
    /// timeout passes.
    async fn serve<S>(self, stream: S, client_cert: Option<ClientCertName>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.into_service::<Incoming>();
        let slot = self.slot;
        let service = app.map_request(move |mut request: hyper::Request<Incoming>| {
            if let Some(name) = &client_cert {
                request.extensions_mut().insert(name.clone());
            }
            request.extensions_mut().insert(slot.clone());
            request
        });
        let service = TowerToHyperService::new(service);
        let stream = FirstByteDeadline::new(stream, self.first_byte_timeout);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection.into_owned());
        tokio::select! {
            served = connection => {
                if let Err(error) = served {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
            }
            () = self.stopped.cancelled() => {}
        }
    }
}

/// Serves `app` on the connections of `incoming` until `stop` completes, then closes them (see
/// the module doc). Returns whether everything closed within `close_timeout`.
pub(crate) async fn serve(
    incoming: TcpIncoming,
    tls: Option<Arc<ServerTls>>,
    app: axum::Router,
    http: &HttpConfig,
    sessions: Sessions,
    stop: impl Future<Output = ()>,
    close_timeout: Duration,
) -> bool {
    let builder = connection_builder(http);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(http.max_connections));
    let mut refusals = Refusals {
        max_connections: http.max_connections,
        since_logged: 0,
        logged_at: None,
    };
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: closed at once (see the module doc).
            drop(stream);
            refusals.refused();
            continue;
        };
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            graceful: graceful.watcher(),
            stopped: sessions.stopped.clone(),
            first_byte_timeout: http.first_byte_timeout,
            slot: ConnectionSlot {
                _permit: Arc::new(permit),
            },
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream, None));
            }
            Some(tls) => {
                tokio::spawn(connection.handshake(stream, Arc::clone(tls)));
            }
        }
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
