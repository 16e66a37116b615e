//! A lean HTTP/1.1 client connection for load generation: one pre-serialised `GET` written per
//! request, the response parsed in place from a reused buffer and its body discarded as it
//! arrives, keep-alive honoured.
//!
//! Why not hyper's client: measured on a 2-core machine, hyper's `client::conn::http1` loop
//! reached 0.84–0.89× of `wrk`'s requests per CPU-second, because every request allocates a
//! `Request`, a `HeaderMap`, a response and a body channel, and hops between two tasks. A load
//! generator that competes with the server for the same cores must spend less than that, so this
//! connection does what `wrk` does: a fixed request, one buffer, no allocation per request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::tls::Tls;

/// Largest response head accepted; more is treated as a protocol error.
const MAX_HEAD: usize = 64 * 1024;
const BUF: usize = 16 * 1024;

/// The fixed request sent over and over, serialised once.
pub(crate) fn request_bytes(uri: &http::Uri) -> Result<Vec<u8>, String> {
    let default_port = default_port(uri).ok_or("expected an http:// or https:// URL")?;
    let host = uri.host().ok_or("the URL has no host")?;
    let path = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/");
    let authority = match uri.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    Ok(format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: siege/{}\r\nAccept: */*\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes())
}

/// The port of a URL without one (80 for `http`, 443 for `https`); `None` for another scheme.
pub(crate) fn default_port(uri: &http::Uri) -> Option<u16> {
    match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    }
}

/// One completed exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    /// Whether the connection may carry the next request.
    pub keep_alive: bool,
}

/// Why an exchange failed, and whether anything of the response had arrived (a request that
/// failed on a reused connection before any byte came back may be retried on a fresh one: the
/// server most likely closed the idle connection just as it was reused).
#[derive(Debug)]
pub(crate) struct ExchangeError {
    pub error: io::Error,
    pub got_bytes: bool,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The TCP connection failed (refused, unreachable).
    Tcp(io::Error),
    /// The TLS handshake failed.
    Handshake(io::Error),
}

/// A plain or TLS socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A keep-alive HTTP/1.1 connection, over TLS or not.
pub(crate) struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> Result<Conn, ConnectError> {
        let tcp = TcpStream::connect(addr).await.map_err(ConnectError::Tcp)?;
        // Requests are single small writes; Nagle would only add delay.
        tcp.set_nodelay(true).map_err(ConnectError::Tcp)?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(tls.handshake(tcp).await.map_err(ConnectError::Handshake)?)),
        };
        Ok(Conn { stream, buf: vec![0; BUF], start: 0, end: 0 })
    }

    /// Writes `request` and reads one whole response, discarding its body.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Response, ExchangeError> {
        self.start = 0;
        self.end = 0;
        let mut got_bytes = false;
        let result = self.exchange_inner(request, &mut got_bytes).await;
        result.map_err(|error| ExchangeError { error, got_bytes })
    }

    async fn exchange_inner(&mut self, request: &[u8], got_bytes: &mut bool) -> io::Result<Response> {
        self.stream.write_all(request).await?;
        // TLS may hold back the last record until flushed (a no-op on a plain socket).
        self.stream.flush().await?;
        loop {
            let head = loop {
                if let Some(head) = parse_head(&self.buf[self.start..self.end])? {
                    break head;
                }
                self.fill().await?;
                *got_bytes = true;
            };
            self.start += head.len;
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let keep_alive = head.keep_alive && !matches!(head.body, Body::UntilClose);
            match head.body {
                Body::Empty => {}
                Body::Length(n) => self.skip(n).await?,
                Body::Chunked => self.skip_chunked().await?,
                Body::UntilClose => self.skip_to_eof().await?,
            }
            return Ok(Response { status: head.status, keep_alive });
        }
    }

    /// Reads more bytes after `end`, compacting or growing the buffer when it is full.
    async fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "response head too large"));
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Discards `n` body bytes, reading them into the buffer as scratch space.
    async fn skip(&mut self, mut n: u64) -> io::Result<()> {
        loop {
            let have = (self.end - self.start) as u64;
            let take = have.min(n);
            self.start += take as usize;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            self.fill().await?;
        }
    }

    async fn skip_chunked(&mut self) -> io::Result<()> {
        let mut decoder = Chunked::default();
        loop {
            let (used, done) = decoder.feed(&self.buf[self.start..self.end])?;
            self.start += used;
            if done {
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            self.fill().await?;
        }
    }

    async fn skip_to_eof(&mut self) -> io::Result<()> {
        loop {
            self.start = 0;
            self.end = 0;
            match self.fill().await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// How the body of a response is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Length of the head in bytes, blank line included.
    len: usize,
    keep_alive: bool,
    body: Body,
}

/// Parses a response head; `None` when more bytes are needed.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    // Most responses carry a handful of headers: a small array is cheap to set up for every
    // response, and the rare long head is parsed again with room for more.
    let mut few = [httparse::EMPTY_HEADER; 16];
    let head = match parse_head_with(bytes, &mut few) {
        Err(HeadError::Parse(httparse::Error::TooManyHeaders)) => {
            let mut many = [httparse::EMPTY_HEADER; 128];
            parse_head_with(bytes, &mut many)
        }
        other => other,
    };
    head.map_err(|e| match e {
        HeadError::Parse(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        HeadError::Invalid(m) => io::Error::new(io::ErrorKind::InvalidData, m),
    })
}

enum HeadError {
    Parse(httparse::Error),
    Invalid(&'static str),
}

fn parse_head_with<'b>(bytes: &'b [u8], headers: &mut [httparse::Header<'b>]) -> Result<Option<Head>, HeadError> {
    let mut resp = httparse::Response::new(headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Parse(e)),
    };
    let status = resp.code.unwrap_or(0);
    let mut keep_alive = resp.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            length = Some(v.ok_or(HeadError::Invalid("bad content-length"))?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides the framing.
            chunked =
                h.value.rsplit(|&b| b == b',').next().is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if status < 200 || status == 204 || status == 304 {
        Body::Empty
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        if n == 0 { Body::Empty } else { Body::Length(n) }
    } else {
        Body::UntilClose
    };
    Ok(Some(Head { status, len, keep_alive, body }))
}

/// Incremental decoder of a chunked body that only finds where it ends.
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Chunk extensions up to the end of the size line.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, then a blank line.
    TrailerLineStart,
    TrailerLine,
    EndLf,
    Done,
}

impl Chunked {
    /// Consumes what it can of `data`; returns the bytes used and whether the body ended.
    fn feed(&mut self, data: &[u8]) -> io::Result<(usize, bool)> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunked body: {m}"));
        let mut i = 0;
        while i < data.len() {
            use ChunkState::*;
            if self.state == Data {
                let take = (data.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(digit))
                        .ok_or_else(|| bad("chunk size overflows"))?;
                    Size
                }
                (Size | Extension, b';' | b' ' | b'\t') => Extension,
                (Size | Extension, b'\r') => SizeLf,
                (Size | Extension | SizeLf, b'\n') => {
                    if self.size == 0 {
                        TrailerLineStart
                    } else {
                        Data
                    }
                }
                (Size, _) => return Err(bad("invalid chunk size")),
                (Extension, _) => Extension,
                (SizeLf, _) => return Err(bad("expected LF after chunk size")),
                (DataCr, b'\r') => DataLf,
                (DataCr | DataLf, b'\n') => Size,
                (DataCr | DataLf, _) => return Err(bad("expected CRLF after chunk data")),
                (TrailerLineStart, b'\r') => EndLf,
                (TrailerLineStart | EndLf, b'\n') => Done,
                (EndLf, _) => return Err(bad("expected LF after trailers")),
                (TrailerLine, b'\n') => TrailerLineStart,
                (TrailerLineStart | TrailerLine, _) => TrailerLine,
                (Data | Done, _) => unreachable!("handled above"),
            };
            if self.state == Done {
                return Ok((i, true));
            }
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_serialised_once_with_host_and_path() {
        let r = request_bytes(&"http://127.0.0.1:8080/a?b=1".parse().unwrap()).unwrap();
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\n"));
        let r = String::from_utf8(request_bytes(&"http://example.com".parse().unwrap()).unwrap()).unwrap();
        assert!(r.starts_with("GET / HTTP/1.1\r\nHost: example.com\r\n"), "{r}");
        let r = String::from_utf8(request_bytes(&"https://example.com:443/x".parse().unwrap()).unwrap()).unwrap();
        assert!(r.starts_with("GET /x HTTP/1.1\r\nHost: example.com\r\n"), "{r}");
        let r = String::from_utf8(request_bytes(&"https://example.com:80/".parse().unwrap()).unwrap()).unwrap();
        assert!(r.contains("Host: example.com:80\r\n"), "{r}");
        assert!(request_bytes(&"ftp://example.com/".parse().unwrap()).is_err());
    }

    #[test]
    fn heads_are_framed_as_rfc_9112_says() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap().unwrap();
        assert_eq!((h.status, h.body, h.keep_alive, h.len), (200, Body::Length(5), true, 38));
        let h = parse_head(b"HTTP/1.1 503 X\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.body, h.keep_alive), (503, Body::Chunked, false));
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.body, h.keep_alive), (Body::UntilClose, false));
        let h = parse_head(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, Body::Empty);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..40 {
            long.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        long.extend_from_slice(b"Content-Length: 3\r\n\r\n");
        assert_eq!(parse_head(&long).unwrap().unwrap().body, Body::Length(3));
    }

    #[test]
    fn chunked_bodies_end_where_they_should_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut d = Chunked::default();
            let (a, done_a) = d.feed(&body[..split]).unwrap();
            if done_a {
                assert_eq!(a, end);
                continue;
            }
            assert_eq!(a, split);
            let (b, done) = d.feed(&body[split..]).unwrap();
            assert!(done, "split {split}");
            assert_eq!(a + b, end, "split {split}");
        }
        let mut d = Chunked::default();
        assert_eq!(d.feed(b"0\r\n\r\n").unwrap(), (5, true));
        assert!(Chunked::default().feed(b"zz\r\n").is_err());
        assert!(Chunked::default().feed(b"1\r\nab").is_err());
    }
}
