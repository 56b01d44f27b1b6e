//! The HTTP server loop: accepts connections and serves [`super::app`] on each, with the
//! limits a public endpoint needs and `axum::serve` does not set — a deadline for a request's
//! headers (a client that sends them slowly, or opens a connection and sends nothing, is cut
//! off: slowloris), the same deadline for an idle keep-alive connection's next request, and a
//! cap on open connections (past it, new ones wait in the kernel's backlog instead of taking
//! memory and tasks), and a deadline for a request's body counted from its first read
//! (a body sent a byte at a time is cut off with 408, however steady its trickle). Each
//! request carries its client's address (`ConnectInfo<SocketAddr>`, read by the throttle of
//! failed guesses, `super::throttle`). On shutdown it stops accepting and lets open requests
//! finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::canned::{Calls, EnvelopeIo};

/// Connection limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// How long a client has to send a request's headers once it starts one, and an idle
    /// keep-alive connection to start its next request.
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// How long a request's body may take to arrive, from its first read.
    pub body_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// How long open requests may run once shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then waits (up to 30 s) for the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let body_timeout = limits.body_timeout;
    let app = app.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| async move {
            next.run(with_body_deadline(request, body_timeout)).await
        },
    ));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, watcher, app) = (builder.clone(), graceful.watcher(), app.clone());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // The protocol is detected from the first bytes, before HTTP/1's header deadline
            // starts: a client that sends nothing at all gets the same deadline here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            // hyper's own rejections (a request it cannot read) get the error envelope.
            let calls = Calls::default();
            let app = TowerToHyperService::new(app);
            let service = {
                let calls = calls.clone();
                hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                    calls.count();
                    // The client's address, for the throttle of failed guesses.
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    hyper::service::Service::call(&app, request)
                })
            };
            let io = TokioIo::new(EnvelopeIo::new(stream, calls));
            let connection = builder
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {DRAIN:?} of shutdown were cut off");
    }
}

/// The error a request body's stream ends with once its deadline passed; extractors turn it
/// into a 408 (see `extract::body_unreadable`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyDeadlineExceeded(pub Duration);

/// Gives the request's body `timeout` to arrive in full, from when the handler starts
/// reading it (a handler may first wait for room to read a large body: that wait is not the
/// client's). A request without a body is left as is.
fn with_body_deadline(request: Request, timeout: Duration) -> Request {
    if http_body::Body::is_end_stream(request.body()) {
        return request;
    }
    request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: None,
            timeout,
        })
    })
}

/// A body that fails with [`BodyDeadlineExceeded`] once its deadline passes.
struct DeadlineBody {
    inner: Body,
    /// Set at the first read.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyDeadlineExceeded(
                this.timeout,
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
