//! A client of the AWS query protocol, for the few RDS and ELBv2 calls siege makes
//! (`DescribeDBClusters`, `FailoverDBCluster`, `ModifyDBCluster`, `DescribeLoadBalancers`,
//! `DescribeTargetGroups`, `DescribeTargetHealth`).
//!
//! The SDK crates of those two services are the largest of the whole build (RDS alone is more
//! than a minute of a cold release build, for three of its 160 operations); this is the same
//! request as theirs: a form-encoded `POST /` signed with SigV4, sent by the SDK's HTTPS client,
//! with the SDK's endpoint, credential and retry configuration, and an XML answer read for the
//! few fields siege uses.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;

use super::error::{causes, classify, http_reason, one_line};
use crate::backend::BackendError;
use crate::util::Rng;

/// Longest one attempt may take before it is given up and retried: a stalled connection must
/// not use up a call's whole [`super::OPERATION_TIMEOUT`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between two attempts, as in the SDK's standard retry mode.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// Credentials with an expiry are fetched again this long before it.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// One AWS service spoken to in the query protocol.
#[derive(Clone, Copy)]
pub(super) struct Service {
    /// The SDK's service id: the key of its per-service endpoint (`AWS_ENDPOINT_URL_RDS`,
    /// `endpoint_url` in the profile's `services` section).
    pub id: &'static str,
    /// The signing name and the endpoint's host prefix.
    pub name: &'static str,
    /// The IAM prefix of its actions, for messages (`elasticloadbalancing:DescribeTargetHealth`).
    pub iam: &'static str,
    pub version: &'static str,
}

pub(super) const RDS: Service = Service { id: "RDS", name: "rds", iam: "rds", version: "2014-10-31" };
pub(super) const ELBV2: Service = Service {
    id: "Elastic Load Balancing v2",
    name: "elasticloadbalancing",
    iam: "elasticloadbalancing",
    version: "2015-12-01",
};

/// A query-protocol client of one service in one region.
pub(super) struct QueryClient {
    service: Service,
    endpoint: String,
    region: String,
    credentials: Option<SharedCredentialsProvider>,
    /// The credentials in use, until shortly before they expire.
    cached: tokio::sync::Mutex<Option<Credentials>>,
    attempts: u32,
    initial_backoff: Duration,
    operation_timeout: Duration,
    rng: std::sync::Mutex<Rng>,
}

/// The HTTPS connector every query client shares: the one the SDK's clients use (rustls with
/// ring, the system's roots), so that connections are pooled across calls.
fn connector() -> &'static Connector {
    static CONNECTOR: OnceLock<Connector> = OnceLock::new();
    CONNECTOR.get_or_init(|| {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        Connector::builder().tls_provider(Provider::Rustls(CryptoMode::Ring)).build()
    })
}

impl QueryClient {
    /// A client configured as the SDK would configure its own from `config`: the endpoint is
    /// `endpoint` (the target's), else one set in code on `config`, else the service's own
    /// (`AWS_ENDPOINT_URL_<SERVICE>`, the profile), else `AWS_ENDPOINT_URL`, else the regional
    /// AWS one. `attempts` and `operation_timeout` as for the SDK's clients.
    pub fn new(
        service: Service,
        config: &SdkConfig,
        region: &str,
        endpoint: Option<&str>,
        attempts: u32,
        operation_timeout: Duration,
    ) -> Self {
        let configured = if config.get_origin("endpoint_url").is_client_config() {
            config.endpoint_url().map(str::to_string)
        } else {
            config
                .service_config()
                .and_then(|c| {
                    let key = aws_types::service_config::ServiceConfigKey::builder()
                        .service_id(service.id)
                        .env("AWS_ENDPOINT_URL")
                        .profile("endpoint_url")
                        .build()
                        .ok()?;
                    c.load_config(key)
                })
                .or_else(|| config.endpoint_url().map(str::to_string))
        };
        let endpoint = endpoint.map(str::to_string).or(configured).unwrap_or_else(|| {
            default_endpoint(
                service.name,
                region,
                config.use_fips().unwrap_or(false),
                config.use_dual_stack().unwrap_or(false),
            )
        });
        QueryClient {
            service,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            credentials: config.credentials_provider(),
            cached: tokio::sync::Mutex::new(None),
            attempts: attempts.max(1),
            initial_backoff: config.retry_config().map(|r| r.initial_backoff()).unwrap_or(Duration::from_secs(1)),
            operation_timeout,
            rng: std::sync::Mutex::new(Rng::new(Rng::fresh_seed())),
        }
    }

    /// The IAM action name of `action`, for messages: `rds:DescribeDBClusters`.
    fn action_name(&self, action: &str) -> String {
        format!("{}:{action}", self.service.iam)
    }

    /// Calls `action` with `params` and returns the answer's root element; AWS errors,
    /// unreachable endpoints and unreadable answers as [`BackendError`]s with one-line messages
    /// (see [`super::error`]). Throttling, 5xx answers and transport errors are retried with
    /// jittered exponential backoff, all within the operation timeout.
    pub async fn call<K: AsRef<str>, V: AsRef<str>>(
        &self,
        action: &str,
        params: &[(K, V)],
    ) -> Result<Element, BackendError> {
        let name = self.action_name(action);
        match tokio::time::timeout(self.operation_timeout, self.call_with_retries(action, params)).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::Api(format!(
                "{}: cannot reach the AWS endpoint (no answer within {}s); check the network, `endpoint:` or AWS_ENDPOINT_URL",
                name.replacen(':', " ", 1),
                self.operation_timeout.as_secs()
            ))),
        }
    }

    async fn call_with_retries<K: AsRef<str>, V: AsRef<str>>(
        &self,
        action: &str,
        params: &[(K, V)],
    ) -> Result<Element, BackendError> {
        let name = self.action_name(action);
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action).append_pair("Version", self.service.version);
            for (k, v) in params {
                form.append_pair(k.as_ref(), v.as_ref());
            }
            form.finish()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(&name, &body)).await {
                Ok(outcome) => outcome,
                Err(_) => Attempt::Retry(BackendError::Api(format!(
                    "{}: cannot reach the AWS endpoint (no answer within {}s); check the network, `endpoint:` or AWS_ENDPOINT_URL",
                    name.replacen(':', " ", 1),
                    ATTEMPT_TIMEOUT.as_secs()
                ))),
            };
            match outcome {
                Attempt::Done(result) => return result,
                Attempt::Retry(e) if attempt >= self.attempts => return Err(e),
                Attempt::Retry(_) => {
                    let ceiling = self.initial_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(MAX_BACKOFF);
                    let jitter = self.rng.lock().map(|mut r| r.unit()).unwrap_or(0.5);
                    tokio::time::sleep(ceiling.mul_f64(jitter)).await;
                }
            }
        }
    }

    /// One signed request and its answer.
    async fn attempt(&self, name: &str, body: &str) -> Attempt {
        let call = name.replacen(':', " ", 1);
        let credentials = match self.credentials().await {
            Ok(c) => c,
            Err(e) => return Attempt::Done(Err(e.for_call(&call))),
        };
        let request = match self.signed_request(&credentials, body) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Done(Err(BackendError::Api(format!("{call}: the request could not be built ({e})"))));
            }
        };
        let response = match connector().call(request).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry(BackendError::Api(format!(
                    "{call}: cannot reach the AWS endpoint ({}); check the network, `endpoint:` or AWS_ENDPOINT_URL",
                    causes(&e)
                )));
            }
        };
        let status = response.status().as_u16();
        let bytes = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return Attempt::Retry(BackendError::Api(format!(
                    "{call}: the answer was cut off ({})",
                    one_line(&e.to_string())
                )));
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let parsed = Element::parse(&text);
        if (200..300).contains(&status) {
            return Attempt::Done(
                parsed.map_err(|e| BackendError::Api(format!("{call}: unreadable answer ({e}): {}", one_line(&text)))),
            );
        }
        let error = parsed.ok().as_ref().and_then(|root| root.find("Error")).map(|e| {
            (e.text_of("Code").unwrap_or_default().to_string(), e.text_of("Message").unwrap_or_default().to_string())
        });
        let (code, message) = match error {
            Some((code, message)) if !code.is_empty() => (code, one_line(&message)),
            _ if status == 403 => ("AccessDenied".to_string(), http_reason(status, &text)),
            _ => (String::new(), http_reason(status, &text)),
        };
        let error = classify(name, &code, &message);
        if status >= 500 || status == 429 || RETRYABLE_CODES.contains(&code.as_str()) {
            Attempt::Retry(error)
        } else {
            Attempt::Done(Err(error))
        }
    }

    /// The credentials of the configured provider, fetched once and again shortly before they
    /// expire (the chain may go to an SSO portal or the instance metadata service).
    async fn credentials(&self) -> Result<Credentials, NoCredentials> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expiry().is_none_or(|at| SystemTime::now() + REFRESH_BEFORE_EXPIRY < at)
        {
            return Ok(c.clone());
        }
        let provider = self.credentials.as_ref().ok_or_else(|| NoCredentials("no credentials provider".into()))?;
        let fresh = provider.provide_credentials().await.map_err(|e| NoCredentials(causes(&e)))?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    fn signed_request(
        &self,
        credentials: &Credentials,
        body: &str,
    ) -> Result<aws_smithy_runtime_api::http::Request, Box<dyn std::error::Error + Send + Sync>> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let uri = format!("{}/", self.endpoint);
        // Signing needs a host, and the connector a scheme it speaks.
        let parsed: http::Uri = uri.parse()?;
        if parsed.host().is_none() || !matches!(parsed.scheme_str(), Some("http" | "https")) {
            return Err(format!("the endpoint {} is not an http:// or https:// URL", self.endpoint).into());
        }
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", concat!("siege/", env!("CARGO_PKG_VERSION")))
            .body(SdkBody::from(body.to_string()))?;
        let identity = credentials.clone().into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?;
        let headers = request.headers().iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap_or_default()));
        let signable = SignableRequest::new("POST", &uri, headers, SignableBody::Bytes(body.as_bytes()))?;
        let (instructions, _) = sign(signable, &params.into())?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(aws_smithy_runtime_api::http::Request::try_from(request)?)
    }
}

/// What one attempt came to: a result to return, or an error worth another attempt.
enum Attempt {
    Done(Result<Element, BackendError>),
    Retry(BackendError),
}

/// The credential chain found nothing usable.
struct NoCredentials(String);

impl NoCredentials {
    fn for_call(&self, call: &str) -> BackendError {
        BackendError::Api(format!(
            "{call}: no usable AWS credentials (siege uses the standard chain: environment, profile, SSO, instance role): {}",
            self.0
        ))
    }
}

/// Error codes the SDK's standard retry mode retries: throttling and transient faults.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// The regional endpoint of a service, as the SDK's endpoint rules give it for the `aws`,
/// `aws-cn` and `aws-us-gov` partitions.
fn default_endpoint(name: &str, region: &str, fips: bool, dual_stack: bool) -> String {
    let host = if fips { format!("{name}-fips") } else { name.to_string() };
    let suffix = match (region.starts_with("cn-"), dual_stack) {
        (true, true) => "api.amazonwebservices.com.cn",
        (true, false) => "amazonaws.com.cn",
        (false, true) => "api.aws",
        (false, false) => "amazonaws.com",
    };
    format!("https://{host}.{region}.{suffix}")
}

/// An XML element of an answer: its local name, its text and its child elements (namespaces
/// and attributes are not needed for what siege reads).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a whole document into its root element.
    pub fn parse(xml: &str) -> Result<Element, String> {
        use xmlparser::{ElementEnd, Token};
        let mut stack: Vec<Element> = Vec::new();
        let mut root = None;
        for token in xmlparser::Tokenizer::from(xml) {
            match token.map_err(|e| e.to_string())? {
                Token::ElementStart { local, .. } => {
                    stack.push(Element { name: local.to_string(), ..Default::default() })
                }
                Token::ElementEnd { end: ElementEnd::Open, .. } => {}
                Token::ElementEnd { end: ElementEnd::Close(..) | ElementEnd::Empty, .. } => {
                    let done = stack.pop().ok_or("a closing tag without an opening one")?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
                Token::Text { text } | Token::Cdata { text, .. } => {
                    if let Some(el) = stack.last_mut() {
                        el.text.push_str(&unescape(text.as_str()));
                    }
                }
                _ => {}
            }
        }
        match (root, stack.is_empty()) {
            (Some(root), true) => Ok(root),
            _ => Err("not a complete XML document".into()),
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element named `name` at any depth below this one.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| if c.name == name { Some(c) } else { c.find(name) })
    }

    /// The text of the child at `path` (`Result/DBClusters`), trimmed; `None` if there is none.
    pub fn text_of(&self, path: &str) -> Option<&str> {
        let mut el = self;
        for part in path.split('/') {
            el = el.child(part)?;
        }
        Some(el.text.trim())
    }

    /// The element at `path` below this one.
    pub fn at(&self, path: &str) -> Option<&Element> {
        let mut el = self;
        for part in path.split('/') {
            el = el.child(part)?;
        }
        Some(el)
    }
}

/// XML text with its entity and character references resolved.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            out.push_str(&rest[amp..]);
            return Cow::Owned(out);
        };
        let entity = &after[..semi];
        let resolved = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match resolved {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..amp + semi + 2]),
        }
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `Prefix.member.1=v1&Prefix.member.2=v2`: a list parameter of the query protocol.
pub(super) fn member_list<'a>(prefix: &str, values: &[&'a str]) -> Vec<(String, &'a str)> {
    values.iter().enumerate().map(|(i, v)| (format!("{prefix}.member.{}", i + 1), *v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_into_elements() {
        let xml = r#"<?xml version="1.0"?>
            <DescribeDBClustersResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">
              <DescribeDBClustersResult><DBClusters><DBCluster>
                <DBClusterIdentifier>prod-db</DBClusterIdentifier>
                <DBClusterMembers>
                  <DBClusterMember><DBInstanceIdentifier>a&amp;b</DBInstanceIdentifier><IsClusterWriter>true</IsClusterWriter></DBClusterMember>
                  <DBClusterMember><DBInstanceIdentifier>c&#x41;&#66;</DBInstanceIdentifier><IsClusterWriter>false</IsClusterWriter></DBClusterMember>
                </DBClusterMembers><Empty/>
              </DBCluster></DBClusters></DescribeDBClustersResult>
            </DescribeDBClustersResponse>"#;
        let root = Element::parse(xml).unwrap();
        assert_eq!(root.name, "DescribeDBClustersResponse");
        let cluster = root.at("DescribeDBClustersResult/DBClusters/DBCluster").unwrap();
        assert_eq!(cluster.text_of("DBClusterIdentifier"), Some("prod-db"));
        let ids: Vec<_> = cluster
            .at("DBClusterMembers")
            .unwrap()
            .all("DBClusterMember")
            .map(|m| m.text_of("DBInstanceIdentifier"))
            .collect();
        assert_eq!(ids, [Some("a&b"), Some("cAB")]);
        assert_eq!(cluster.text_of("Empty"), Some(""));
        assert_eq!(root.find("IsClusterWriter").map(|e| e.text.as_str()), Some("true"));
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("<a>").is_err());
        assert!(Element::parse("not xml").is_err());
    }

    #[test]
    fn default_endpoints_follow_the_partition() {
        assert_eq!(default_endpoint("rds", "eu-west-1", false, false), "https://rds.eu-west-1.amazonaws.com");
        assert_eq!(default_endpoint("rds", "us-east-1", true, false), "https://rds-fips.us-east-1.amazonaws.com");
        assert_eq!(
            default_endpoint("elasticloadbalancing", "cn-north-1", false, false),
            "https://elasticloadbalancing.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(default_endpoint("rds", "us-west-2", false, true), "https://rds.us-west-2.api.aws");
    }

    #[test]
    fn list_parameters_are_numbered_from_one() {
        assert_eq!(
            member_list("Names", &["a", "b"]),
            [("Names.member.1".to_string(), "a"), ("Names.member.2".to_string(), "b")]
        );
    }
}
