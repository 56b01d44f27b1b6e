//! Gives hyper's own rejections the API's error envelope. A request hyper cannot read — a
//! malformed request line (400), a URI longer than it reads (414), headers over its buffer or
//! too many of them (431) — is answered by hyper itself, before any handler runs, with an
//! empty body. [`EnvelopeIo`] sits between hyper and the socket and rewrites exactly those
//! answers into `{"error": {"code", "message"}}` with `Content-Type: application/json`.
//!
//! Invariant: only a response no handler produced is rewritten. Every handler call is counted
//! ([`Calls`]) and every final response head written is matched against that count; a head
//! written when every call already has its answer can only be hyper's own, and is rewritten
//! when it is one of the three bodiless rejections above (`connection: close`,
//! `content-length: 0`). A response written by a handler is never touched, whatever it holds.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many requests of one connection reached the application.
#[derive(Clone, Default)]
pub struct Calls(Arc<AtomicU64>);

impl Calls {
    /// Counts one request handed to the application (before it runs).
    pub fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A connection's socket, as hyper writes to it (see the module documentation).
pub struct EnvelopeIo<S> {
    inner: S,
    calls: Calls,
    /// Final response heads written for counted calls.
    answered: u64,
    /// A rewritten rejection being written: its bytes, how many went out, and the length of
    /// hyper's original to report once all did.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl<S> EnvelopeIo<S> {
    pub fn new(inner: S, calls: Calls) -> Self {
        EnvelopeIo {
            inner,
            calls,
            answered: 0,
            rewrite: None,
        }
    }
}

/// The enveloped form of hyper's bodiless rejection `head`, if it is one.
fn envelope(head: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(head).ok()?;
    let rest = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let (status, code, message) = match rest.get(..4)? {
        "400 " => (
            "400 Bad Request",
            "bad_request",
            "the request could not be read as HTTP/1.1",
        ),
        "414 " => (
            "414 URI Too Long",
            "uri_too_long",
            "the URL is longer than this server reads",
        ),
        "431 " => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "the request's headers are more or larger than this server reads",
        ),
        _ => return None,
    };
    let lower = head.to_ascii_lowercase();
    if !(lower.contains("\r\nconnection: close\r\n") && lower.contains("\r\ncontent-length: 0\r\n"))
    {
        return None;
    }
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for EnvelopeIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> EnvelopeIo<S> {
    /// Writes what is left of a rewrite; ready with the original's length once all is out.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, original)) = &mut self.rewrite {
            if *written == bytes.len() {
                let original = *original;
                self.rewrite = None;
                return Poll::Ready(Ok(original));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EnvelopeIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        let is_head = buf.starts_with(b"HTTP/1.");
        // An interim `100 Continue` answers nothing yet.
        let is_final_head = is_head && buf.get(9) != Some(&b'1');
        if is_final_head {
            if this.answered < this.calls.get() {
                this.answered += 1;
            } else if let Some(bytes) = envelope(buf) {
                this.rewrite = Some((bytes, 0, buf.len()));
                return this.poll_rewrite(cx);
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes a response's head at the start of a write of its own,
    // which is where the head is looked for.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_rejections_are_enveloped() {
        let canned = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n\
                 date: Thu, 03 Dec 2026 11:41:13 GMT\r\n\r\n"
            )
        };
        for (status, code) in [
            ("400 Bad Request", "bad_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            let rewritten =
                String::from_utf8(envelope(canned(status).as_bytes()).unwrap()).unwrap();
            assert!(
                rewritten.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{rewritten}"
            );
            let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
            assert!(head.contains("content-type: application/json"), "{head}");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(body["error"]["code"], code);
        }
        // Anything else is left alone.
        assert!(envelope(canned("404 Not Found").as_bytes()).is_none());
        assert!(envelope(canned("505 HTTP Version Not Supported").as_bytes()).is_none());
        let with_body = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
                         content-length: 2\r\n\r\n{}";
        assert!(envelope(with_body.as_bytes()).is_none());
        let kept_alive = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(envelope(kept_alive.as_bytes()).is_none());
    }

    /// A handler's own bodiless 400 on a closing connection (a webhook reply, say) is counted
    /// as the answer to its call and written as it is.
    #[tokio::test]
    async fn a_handlers_response_is_never_rewritten() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let bodiless =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (client, server) = tokio::io::duplex(4096);
        let calls = Calls::default();
        let mut io = EnvelopeIo::new(server, calls.clone());
        calls.count();
        io.write_all(bodiless).await.unwrap();
        // The next one answers no call: hyper's.
        io.write_all(bodiless).await.unwrap();
        drop(io);
        let mut out = Vec::new();
        let mut client = client;
        client.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        let (first, second) = out.split_at(bodiless.len());
        assert_eq!(first.as_bytes(), bodiless, "{out}");
        assert!(second.contains(r#""code":"bad_request""#), "{out}");
        assert_eq!(out.matches("HTTP/1.1 400").count(), 2, "{out}");
    }
}
