//! The HTTP layer under the routes: a hyper accept loop with a connection cap, a header-read
//! timeout, an idle timeout, and a graceful drain; and the middleware that bounds a request's
//! URI and headers and gives every 4xx a JSON body. A connection's first request head is read
//! and checked here before hyper sees it (`first_head`), because hyper answers a head it cannot
//! parse, or one past its buffer, with an empty-bodied 400 or 431 and offers no hook to change
//! that (hyperium/hyper#3225): those get a JSON body too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::ApiError;
use crate::Error;

/// Bounds on what one client can hold or send.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this, from the moment
    /// the server waits for it; this also closes a keep-alive connection left idle between
    /// requests for that long.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (a stalled
    /// body, a client that stopped reading its response).
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Request targets (path and query) longer than this are refused with 414.
    pub max_uri_bytes: usize,
    /// Request headers larger than this in total are refused with 431.
    pub max_header_bytes: usize,
    /// How long a shutdown waits for requests in flight before closing their connections.
    pub drain_timeout: Duration,
    /// A request not answered within this gets a 503 with `Retry-After` (the database is slow
    /// or unreachable) instead of hanging; its work is dropped (a cutover's transaction rolls
    /// back with its connection).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_body_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            drain_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The largest request head read: above our URI and header limits, so that those are answered
/// by [`bound_request`] with JSON. A first head past it is refused by [`first_head`] (JSON 431);
/// a later one on a keep-alive connection by hyper itself (an empty-bodied 431).
const HEAD_BUFFER_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish the request it is serving (up to `limits.drain_timeout`), and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting: at the cap, new clients wait in the backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set does not grow with the process's age.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let limits = limits.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            let Some(prefix) = first_head(&mut stream, &limits, peer).await else {
                return;
            };
            let activity = Arc::new(AtomicU64::new(0));
            let origin = Instant::now();
            let io =
                TokioIo::new(Tracked { inner: stream, prefix, read_prefix: 0, activity: activity.clone(), origin });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(HEAD_BUFFER_BYTES)
                .serve_connection(io, service);
            tokio::pin!(conn);
            let mut draining = false;
            loop {
                let idle_deadline =
                    origin + Duration::from_millis(activity.load(Ordering::Relaxed)) + limits.idle_timeout;
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !draining => {
                        // Finish the request in flight, then close; an idle connection closes now.
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep_until(idle_deadline.into()) => {
                        let last = origin + Duration::from_millis(activity.load(Ordering::Relaxed));
                        if last.elapsed() >= limits.idle_timeout {
                            tracing::debug!(%peer, "idle connection closed");
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let in_flight = connections.len();
    tracing::info!(connections = in_flight, "shutting down: draining requests in flight");
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(limits.drain_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(connections = connections.len(), "drain timed out: closing the remaining connections");
        connections.shutdown().await;
    }
    tracing::info!("api stopped");
    Ok(())
}

/// Reads a connection's first request head (within the header-read timeout, at most
/// [`HEAD_BUFFER_BYTES`]) and checks that it parses as HTTP/1. Returns the bytes read, for hyper
/// to read again; `None` when the connection is done: closed or timed out (nothing to answer),
/// or answered here with a JSON 400 (not HTTP) or 431 (a head too large).
async fn first_head(
    stream: &mut tokio::net::TcpStream,
    limits: &HttpLimits,
    peer: std::net::SocketAddr,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + limits.header_read_timeout;
    let mut buf = Vec::with_capacity(1024);
    let refusal = loop {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return Some(buf),
            Ok(httparse::Status::Partial) if buf.len() >= HEAD_BUFFER_BYTES => {
                break (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("request head over {HEAD_BUFFER_BYTES} bytes; at most that is read"),
                );
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                break (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "more than 128 request headers".to_owned());
            }
            Err(e) => break (StatusCode::BAD_REQUEST, format!("not an HTTP/1 request: {e}")),
        }
        let mut chunk = [0u8; 4096];
        let room = (HEAD_BUFFER_BYTES + 1 - buf.len()).min(chunk.len());
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                tracing::debug!(%peer, "request head not received in time: connection closed");
                return None;
            }
        }
    };
    tracing::debug!(%peer, status = refusal.0.as_u16(), reason = %refusal.1, "request head refused");
    let body = serde_json::json!({ "error": refusal.1 }).to_string();
    let reason = refusal.0.canonical_reason().unwrap_or("");
    let response = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        refusal.0.as_u16(),
        body.len()
    );
    let _ = tokio::time::timeout(limits.idle_timeout, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    None
}

/// A TCP stream that records when it last read or wrote (milliseconds since `origin`), for
/// the idle timeout; it first serves `prefix`, the bytes [`first_head`] already read.
struct Tracked {
    inner: tokio::net::TcpStream,
    prefix: Vec<u8>,
    read_prefix: usize,
    activity: Arc<AtomicU64>,
    origin: Instant,
}

impl Tracked {
    fn touch(&self) {
        self.activity.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.read_prefix < self.prefix.len() {
            let n = (self.prefix.len() - self.read_prefix).min(buf.remaining());
            let from = self.read_prefix;
            buf.put_slice(&self.prefix[from..from + n]);
            self.read_prefix += n;
            self.touch();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The first query parameter name that appears twice in `query` (`ts=a&ts=b`), which would
/// otherwise be read as one of its values, silently.
fn repeated_parameter(query: &str) -> Option<&str> {
    let mut seen = std::collections::HashSet::new();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split('=').next().unwrap_or(p))
        .find(|name| !seen.insert(*name))
}

/// `text` cut to at most `max` bytes (on a character boundary), with "…" when cut: input
/// echoed in an error stays short however long the input was.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Refuses a request target over `max_uri_bytes` (414) or headers over `max_header_bytes` in
/// total (431), a query parameter given twice (400), and turns every 4xx answered without JSON (axum's extractor rejections, the
/// body limit's 413) into `{"error": ...}`.
pub(crate) async fn bound_request(limits: Arc<HttpLimits>, req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("request target of {uri_len} bytes; at most {} are accepted", limits.max_uri_bytes),
        )
        .into_response();
    }
    if let Some(repeated) = req.uri().query().and_then(repeated_parameter) {
        return ApiError::bad_request(format!(
            "query parameter {:?} is given more than once; give it once",
            truncate(repeated, 64)
        ))
        .into_response();
    }
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if header_bytes > limits.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("headers of {header_bytes} bytes; at most {} are accepted", limits.max_header_bytes),
        )
        .into_response();
    }
    let Ok(response) = tokio::time::timeout(limits.request_timeout, next.run(req)).await else {
        tracing::warn!(timeout_s = limits.request_timeout.as_secs_f64(), "request timed out");
        return ApiError::unavailable(format!(
            "no answer within {:.1}s (the request timeout): the database is slow or unreachable",
            limits.request_timeout.as_secs_f64()
        ))
        .into_response();
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !response.status().is_client_error() || is_json {
        return response;
    }
    let status = response.status();
    // A rejection's text is short; read at most 4 KiB of it.
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("client error").to_owned(),
    };
    ApiError::new(status, text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_found_and_echoes_are_cut() {
        assert_eq!(repeated_parameter("ts=1&offset=2&ts=3"), Some("ts"));
        assert_eq!(repeated_parameter("ts=1&offset=2"), None);
        assert_eq!(repeated_parameter("a&a"), Some("a"));
        assert_eq!(repeated_parameter(""), None);
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate(&"x".repeat(10_000), 32).len(), 32 + "…".len());
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
