//! Small HTTP/1.1 helpers on hyper 1 shared by the lab's servers (balancer, task app, control
//! API) and its clients (health checks, the control client of the lab backend and commands).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The response type of every lab server: small, fully buffered bodies.
pub type Resp = Response<Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("request to {0} timed out")]
    Timeout(String),
    #[error("invalid url {0}")]
    Url(String),
    #[error("http: {0}")]
    Http(String),
}

/// A JSON response with `status`.
pub fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// A plain-text response with `status`.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// Serves HTTP/1.1 on `listener` with `handler` until `cancel` fires. Each connection runs in
/// its own task; connections are closed when `cancel` fires.
pub async fn serve<H, F>(listener: TcpListener, cancel: CancellationToken, handler: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h(req, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

/// The query parameter `key` of `uri`, if present.
pub fn query_param<'a>(uri: &'a http::Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A response read in full by [`request`].
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One request on a fresh connection (control calls, health checks): `url` is
/// `http://host:port/path`. The whole exchange is bounded by `timeout`.
pub async fn request(
    method: http::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let uri: http::Uri = url.parse().map_err(|_| HttpError::Url(url.to_string()))?;
    let auth = uri.authority().ok_or_else(|| HttpError::Url(url.to_string()))?.clone();
    let fut = async {
        let stream = TcpStream::connect(auth.as_str())
            .await
            .map_err(|source| HttpError::Connect { addr: auth.to_string(), source })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut b = Request::builder().method(method).uri(path).header(http::header::HOST, auth.as_str());
        if let Some(t) = bearer {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b.body(Full::new(payload)).map_err(|e| HttpError::Http(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| HttpError::Http(e.to_string()))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| HttpError::Http(e.to_string()))?.to_bytes();
        Ok(Reply { status, body })
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| HttpError::Timeout(url.to_string()))?
}

/// Reads a request body in full, refusing bodies over `limit` bytes.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<(http::request::Parts, Bytes), String> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok((parts, c.to_bytes())),
        Err(e) => Err(e.to_string()),
    }
}
