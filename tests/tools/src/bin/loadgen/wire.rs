//! loadgen's HTTP/1.1 client, kept small so that the client's own CPU per request stays small
//! beside the server's on a shared machine: each request's bytes are built before the clock starts
//! and written with one call, and the answer's head is read with httparse and its body
//! (`Content-Length`) read and dropped. No pipelining: one request at a time per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers read at most from one answer head.
const MAX_HEADERS: usize = 32;

/// The bytes of one POST: its head and its body.
pub fn post(host: &str, path: &str, signature: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json; charset=utf-8\r\n\
         stripe-signature: {signature}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    request
}

/// Where the requests go: an address, over HTTPS when a client configuration is given.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// A keep-alive connection; over plain TCP, retried for up to 10 s while the server starts.
    pub async fn connect(&self) -> Result<Connection, String> {
        let stream: Box<dyn Stream> = match &self.tls {
            Some(tls) => {
                Box::new(::tests::tls::connect_with(self.addr, "localhost", tls.clone()).await?)
            }
            None => Box::new(::tests::http::connect(self.addr).await?),
        };
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8 * 1024),
        })
    }
}

/// A byte stream: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One keep-alive connection to the server.
pub struct Connection {
    stream: Box<dyn Stream>,
    /// The answer being read.
    buf: Vec<u8>,
}

/// What the server answered.
pub struct Answer {
    pub status: u16,
    /// The server closes the connection after this answer.
    pub close: bool,
}

/// Why an exchange failed.
pub enum Failure {
    /// The connection failed: the request counts as failed, and a new connection is opened.
    Io(io::Error),
    /// The server answered something this client does not read: the run stops with this.
    Protocol(String),
}

/// What an answer's head says.
struct Head {
    /// The head's length in bytes.
    len: usize,
    status: u16,
    body: usize,
    close: bool,
}

impl Connection {
    /// Writes `request` (head and body) and reads the whole answer.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer, Failure> {
        self.stream.write_all(request).await.map_err(Failure::Io)?;
        self.buf.clear();
        let head = loop {
            if let Some(head) = parse_head(&self.buf)? {
                break head;
            }
            self.fill().await?;
        };
        let end = head.len + head.body;
        while self.buf.len() < end {
            self.fill().await?;
        }
        if self.buf.len() > end {
            return Err(Failure::Protocol(
                "the server sent bytes after its answer".into(),
            ));
        }
        Ok(Answer {
            status: head.status,
            close: head.close,
        })
    }

    /// Reads what the socket has into the buffer; the end of the stream is an error here.
    async fn fill(&mut self) -> Result<(), Failure> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::Io(e)),
        }
    }
}

/// The answer's head, once the buffer holds all of it.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::Protocol(format!("an unreadable answer head: {e}"))),
    };
    let status = answer.code.unwrap_or(0);
    let mut body = None;
    let mut close = false;
    for header in answer.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            body = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if body.is_none() {
                return Err(Failure::Protocol("an unreadable Content-Length".into()));
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Failure::Protocol(
                "an answer with Transfer-Encoding (only Content-Length is read)".into(),
            ));
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= header
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let body = match (body, status) {
        (Some(body), _) => body,
        // These carry no body (RFC 9110 §6.4.1).
        (None, 204 | 304) => 0,
        (None, _) => {
            return Err(Failure::Protocol(format!(
                "a {status} answer without Content-Length"
            )));
        }
    };
    Ok(Some(Head {
        len,
        status,
        body,
        close,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Failure> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_head_is_read_once_whole() {
        assert!(matches!(head("HTTP/1.1 200 OK\r\ncontent-le"), Ok(None)));
        let Ok(Some(h)) = head("HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"ok\":true}") else {
            panic!("a whole head");
        };
        assert_eq!((h.status, h.body, h.close), (200, 13, false));
        assert_eq!(h.len, "HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n".len());
    }

    #[test]
    fn connection_close_and_bodiless_answers_are_understood() {
        let Ok(Some(h)) = head("HTTP/1.1 204 No Content\r\nConnection: keep-alive, Close\r\n\r\n")
        else {
            panic!("a whole head");
        };
        assert_eq!((h.status, h.body, h.close), (204, 0, true));
    }

    #[test]
    fn what_this_client_does_not_read_stops_the_run() {
        for text in [
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(matches!(head(text), Err(Failure::Protocol(_))), "{text}");
        }
    }

    #[test]
    fn a_request_is_its_head_and_body() {
        let request = post("127.0.0.1:1", "/stripe/webhook", "t=1,v1=ab", b"{}");
        let text = String::from_utf8(request).unwrap_or_default();
        assert!(text.starts_with("POST /stripe/webhook HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"));
        assert!(text.ends_with("stripe-signature: t=1,v1=ab\r\ncontent-length: 2\r\n\r\n{}"));
    }
}
