//! A client of the lab's control API, used by `siege lab status|down` and the lab backend.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::control::Call;
use super::supervisor::LabState;
use super::web;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("lab control API at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("lab control API {path} answered {status}: {message}")]
    Status { path: String, status: u16, message: String },
    #[error("lab control API {path}: unexpected answer: {message}")]
    Decode { path: String, message: String },
}

/// Control URL and bearer token of one lab.
#[derive(Debug, Clone)]
pub struct ControlClient {
    pub url: String,
    token: String,
}

const TIMEOUT: Duration = Duration::from_secs(5);

impl ControlClient {
    pub fn new(url: &str, token: &str) -> Self {
        ControlClient { url: url.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<bytes::Bytes, ClientError> {
        let url = format!("{}{path}", self.url);
        let r = web::request(method, &url, Some(&self.token), body, TIMEOUT)
            .await
            .map_err(|e| ClientError::Unreachable { url: self.url.clone(), message: e.to_string() })?;
        if !r.status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
            return Err(ClientError::Status { path: path.into(), status: r.status.as_u16(), message });
        }
        Ok(r.body)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let b = self.call(http::Method::GET, path, None).await?;
        serde_json::from_slice(&b).map_err(|e| ClientError::Decode { path: path.into(), message: e.to_string() })
    }

    /// One `POST` of the control API ([`super::control`]), its answer typed.
    pub async fn send<C: Call>(&self, request: &C) -> Result<C::Answer, ClientError> {
        let decode = |message: String| ClientError::Decode { path: C::PATH.into(), message };
        let body = serde_json::to_value(request).map_err(|e| decode(e.to_string()))?;
        let b = self.call(http::Method::POST, C::PATH, Some(&body)).await?;
        serde_json::from_slice(&b).map_err(|e| decode(e.to_string()))
    }

    /// The lab's state with the events after `events_since`.
    pub async fn state(&self, events_since: u64) -> Result<LabState, ClientError> {
        self.get(&format!("/v1/state?events_since={events_since}")).await
    }

    /// Whether a lab answers at this URL (no token needed).
    pub async fn ping(&self) -> bool {
        let url = format!("{}/v1/ping", self.url);
        matches!(web::request(http::Method::GET, &url, None, None, Duration::from_secs(2)).await, Ok(r) if r.status.is_success())
    }
}
