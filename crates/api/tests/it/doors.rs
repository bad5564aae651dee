//! The doors of the HTTP service: the admin token on `POST /cutover`, the exposure check, and
//! the HTTP layer's timeouts and size limits, each answered with JSON.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// How long a test waits for the server to close a connection before failing: far above the
/// configured timeouts, so a pass is the server's doing and a hang is a failure.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

fn config(url: &str, token: Option<&str>) -> api::ApiConfig {
    let mut config = api::ApiConfig::new(url, "127.0.0.1:0".parse().unwrap(), 2, lab::catalog::projections());
    config.admin_token = token.map(|t| api::AdminToken::new(t).unwrap());
    config
}

#[tokio::test]
async fn an_unauthorised_cutover_is_refused_and_changes_nothing() {
    let f = fixture(3, true).await;
    for (token, what) in [(None, "no token"), (Some("wrong-token-0123456789"), "a wrong token"), (Some(""), "empty")] {
        let (status, body) = f.post_as("/cutover", r#"{"version":"v4"}"#, token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    let resp = f.http.post(format!("{}/cutover", f.base)).body(r#"{"version":"v4"}"#).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"reproject admin\"");
    // Basic auth with the right secret is not a bearer token.
    let resp =
        f.http.post(format!("{}/cutover", f.base)).basic_auth(ADMIN_TOKEN, Some("")).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (_, current) = f.get("/aggregate/1").await;
    assert_eq!(current["projection_version"], "v3", "refused cutovers change nothing: {current}");
    // Reads stay open without a token.
    let (status, _) = f.get("/projections").await;
    assert_eq!(status, 200);
    let (status, body) = f.post("/cutover", r#"{"version":"v4"}"#).await;
    assert_eq!(status, 200, "the right token switches: {body}");
}

#[tokio::test]
async fn without_a_configured_token_cutover_is_disabled_and_says_how_to_enable_it() {
    let f = fixture(3, true).await;
    let (base, _stop) = serve(config(&f.url, None)).await;
    let resp = f
        .http
        .post(format!("{base}/cutover"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"version":"v4"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("--admin-token-file") && message.contains("REPROJECT_ADMIN_TOKEN"), "{body}");
    let resp = f.http.get(format!("{base}/aggregate/1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "reads are served");
}

#[tokio::test]
async fn a_non_loopback_address_needs_a_token() {
    let url = pgharness::throwaway().fresh_database();
    let mut exposed = config(&url, None);
    exposed.listen = "0.0.0.0:0".parse().unwrap();
    let err = api::serve(&exposed, async {}, |_| panic!("must not listen")).await.expect_err("refused");
    assert!(matches!(err, api::Error::Unprotected(_)), "{err}");
    assert!(err.to_string().contains("--admin-token-file"), "{err}");
    assert!(
        api::check_exposure("0.0.0.0:8080".parse().unwrap(), Some(&api::AdminToken::new(ADMIN_TOKEN).unwrap())).is_ok()
    );
    assert!(api::check_exposure("[::1]:8080".parse().unwrap(), None).is_ok());
}

/// Reads from `stream` until the server closes it; fails if that takes over [`CLOSE_BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(CLOSE_BOUND, stream.read_to_end(&mut out)).await;
    let _ = read.expect("the server closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slow_header_connection_is_closed() {
    let f = fixture(1, false).await;
    let mut cfg = config(&f.url, None);
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    let (base, _stop) = serve(cfg).await;
    let addr = base.trim_start_matches("http://");
    let mut slow = TcpStream::connect(addr).await.unwrap();
    // Half a request head, then nothing (a slowloris client).
    slow.write_all(b"GET /aggregate/1 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let reply = read_until_closed(&mut slow).await;
    assert!(!reply.contains("200 OK"), "an unfinished request is not served: {reply}");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed by the timeout, not at once");
    // A client that sends its head in time is served on the same server.
    let resp = f.http.get(format!("{base}/aggregate/1")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let f = fixture(1, false).await;
    let mut cfg = config(&f.url, None);
    cfg.limits.header_read_timeout = Duration::from_secs(30);
    cfg.limits.idle_timeout = Duration::from_millis(300);
    let (base, _stop) = serve(cfg).await;
    let mut idle = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    idle.write_all(b"GET /aggregate/1 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The response, then the server's close once the connection has been idle long enough.
    let reply = read_until_closed(&mut idle).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn oversized_requests_get_json_413_414_431() {
    let f = fixture(1, true).await;
    let big_body = format!(r#"{{"version":"{}"}}"#, "v".repeat(100 * 1024));
    let (status, body) = f.post("/cutover", &big_body).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_string(), "{body}");

    let long_target = format!("/aggregate/1?pad={}", "x".repeat(10 * 1024));
    let (status, body) = f.get(&long_target).await;
    assert_eq!(status, 414, "{body}");
    assert!(body["error"].as_str().unwrap().contains("request target"), "{body}");

    let resp =
        f.http.get(format!("{}/aggregate/1", f.base)).header("x-pad", "y".repeat(20 * 1024)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 431);
    assert!(resp.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("headers"));

    // axum's own rejections (a path segment that is not UTF-8) come back as JSON too.
    let resp = f.http.get(format!("{}/aggregate/%FF", f.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_and_a_long_id_is_not_echoed_whole() {
    let f = fixture(2, false).await;
    let (status, body) = f.get("/aggregate/1/as-of?ts=2030-01-01T00:00:00Z&ts=2000-01-01T00:00:00Z").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"ts\" is given more than once"), "{body}");
    let (status, body) = f.get("/aggregate/1/as-of?offset=5&offset=6").await;
    assert_eq!(status, 400, "{body}");

    let long_id = "9".repeat(5_000) + "x";
    let (status, body) = f.get(&format!("/aggregate/{long_id}")).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.len() < 200 && message.contains("is not a bigint stream id"), "{message}");

    let long_ts = "2".repeat(5_000);
    let (status, body) = f.get(&format!("/aggregate/1/as-of?ts={long_ts}")).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.len() < 300 && message.contains("RFC 3339"), "an invalid ts is not echoed whole: {message}");
}

/// Reads from `stream` until the end of one response head and a `Content-Length` body.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed before a whole response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_until_one_leaves() {
    let f = fixture(1, false).await;
    let mut cfg = config(&f.url, None);
    cfg.limits.max_connections = 1;
    let (base, _stop) = serve(cfg).await;
    let addr = base.trim_start_matches("http://").to_owned();
    // The first client is served and keeps its connection open (keep-alive): it holds the cap.
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first.write_all(b"GET /aggregate/1 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    // The second one is accepted by the kernel but not served while the first stays.
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second.write_all(b"GET /aggregate/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut byte)).await;
    assert!(waited.is_err(), "a connection past the cap was served while the first was open");
    // The first leaves: the second is served.
    drop(first);
    let reply = tokio::time::timeout(CLOSE_BOUND, read_response(&mut second)).await.expect("served once the cap frees");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// Sends `raw` on a new connection and returns everything the server writes until it closes.
async fn exchange(base: &str, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(raw).await.unwrap();
    read_until_closed(&mut stream).await
}

#[tokio::test]
async fn what_is_not_http_or_too_large_for_the_parser_gets_json_too() {
    let f = fixture(1, false).await;
    for (raw, status, needle) in [
        (b"HELLO THERE\r\n\r\n".to_vec(), "400", "not an HTTP/1 request"),
        (b"\x00\x01\x02\x03\r\n\r\n".to_vec(), "400", "not an HTTP/1 request"),
        (
            format!("GET /aggregate/1 HTTP/1.1\r\nx-pad: {}\r\n\r\n", "z".repeat(70 * 1024)).into_bytes(),
            "431",
            "request head over",
        ),
        (
            format!("GET /aggregate/1 HTTP/1.1\r\n{}\r\n", "x-h: 1\r\n".repeat(200)).into_bytes(),
            "431",
            "more than 128 request headers",
        ),
    ] {
        let reply = exchange(&f.base, &raw).await;
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply:.200}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply:.300}"));
        assert!(json["error"].as_str().unwrap().contains(needle), "{json}");
    }
    // A request split across writes, and pipelined requests behind it, are served as before.
    let mut stream = TcpStream::connect(f.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /aggregate/1 HT").await.unwrap();
    stream.flush().await.unwrap();
    stream
        .write_all(b"TP/1.1\r\nHost: x\r\n\r\nGET /aggregate/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut stream).await;
    assert_eq!(reply.matches("HTTP/1.1 200 OK").count(), 2, "{reply}");
}
