//! Turns AWS SDK errors into [`BackendError`]s with messages a person can act on: the IAM action
//! that was denied, the resource that is missing, the endpoint that cannot be reached.

use std::error::Error as StdError;

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use crate::backend::BackendError;

/// Error codes AWS services use for "not allowed", across the protocols siege speaks.
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
    "AuthorizationError",
    "NotAuthorized",
];

/// Error codes that mean "the credentials themselves are wrong or expired".
const BAD_CREDENTIALS: &[&str] = &[
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
];

/// Error codes that mean "the named resource does not exist".
const NOT_FOUND: &[&str] = &[
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "DBClusterNotFoundFault",
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "ResourceNotFoundException",
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
];

/// Error codes of a throttled call: refused, not applied, and worth sending again after a pause.
const THROTTLED: &[&str] = &[
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
];

/// What a failed call says about whether it was applied: what decides whether a mutating call
/// may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Refused, or never sent: nothing changed. `retryable` for throttling.
    NotApplied { retryable: bool },
    /// No answer in time, a connection lost or an answer unreadable after the request may have
    /// gone out, or a 5xx: the call may have been applied.
    Unknown,
}

/// The [`Outcome`] of a failed SDK call.
pub(super) fn outcome<E>(err: &SdkError<E, HttpResponse>) -> Outcome
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ConstructionFailure(_) => Outcome::NotApplied { retryable: false },
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            if status >= 500 {
                Outcome::Unknown
            } else {
                let code = err.code().unwrap_or_default();
                Outcome::NotApplied { retryable: status == 429 || THROTTLED.contains(&code) }
            }
        }
        _ => Outcome::Unknown,
    }
}

/// Longest message kept from an error answer: AWS messages are a sentence; anything longer is a
/// page someone's proxy sent.
const MAX_MESSAGE: usize = 240;

/// Maps an SDK error of the call `action` (the IAM action name, e.g. `ecs:StopTask`) to a
/// [`BackendError`] with a one-line message: the service, the operation, the error code and the
/// message (never the SDK's debug dump of the request, the headers or an HTML body).
pub(crate) fn aws_error<E>(action: &str, err: SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let call = call_name(action);
    match &err {
        // Identity resolution fails before anything is sent and surfaces as a dispatch failure.
        SdkError::DispatchFailure(_) if causes(&err).contains("credential") => {
            return BackendError::Api(format!(
                "{call}: no usable AWS credentials (siege uses the standard chain: environment, profile, SSO, instance role): {}",
                causes(&err)
            ));
        }
        // No answer at all: before a run changes anything, a precondition (exit 4), not an
        // internal error.
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return BackendError::Unreachable(format!(
                "{call}: cannot reach the AWS endpoint ({}); check the network, `endpoint:` or AWS_ENDPOINT_URL",
                causes(&err)
            ));
        }
        SdkError::ConstructionFailure(_) => {
            return BackendError::Api(format!(
                "{call}: the request could not be built ({}); are credentials and a region configured?",
                causes(&err)
            ));
        }
        _ => {}
    }
    let mut code = err.code().unwrap_or("").to_string();
    let mut message = err.message().map(str::to_string);
    if code.is_empty()
        && let Some(raw) = err.raw_response()
    {
        // An error body the SDK could not parse (a proxy, or an emulator answering in another
        // protocol): the status and any XML `<Code>`/`<Message>` still say what happened.
        let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
        let status = raw.status().as_u16();
        if let Some(c) = xml_value(&body, "Code") {
            code = c;
            message = xml_value(&body, "Message").or(message);
        } else if status == 403 {
            code = "AccessDenied".into();
            message = message.or_else(|| Some(http_reason(status, &body)));
        } else {
            message = Some(http_reason(status, &body));
        }
    }
    let message = message.map(|m| one_line(&m)).unwrap_or_else(|| causes(&err));
    classify(action, &code, &message)
}

/// `service Operation` of an IAM action name: `cloudwatch:GetMetricData` → `cloudwatch GetMetricData`.
fn call_name(action: &str) -> String {
    action.replacen(':', " ", 1)
}

/// The chain of causes of an error, each once, on one line: `dispatch failure: io error: tcp
/// connect error: Connection refused (os error 111)`. The SDK's `Display` of its wrappers is
/// short; their `Debug` (which `DisplayErrorContext` appends) is a dump of the whole response.
pub(super) fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        // Wrappers often repeat their source's text: keep the new part only.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    one_line(&parts.join(": "))
}

/// `HTTP 500 Internal Server Error: <reason>` for an answer that is not an AWS error: the HTML
/// page's title (or first text), a JSON `message`, or the start of a plain body.
pub(super) fn http_reason(status: u16, body: &str) -> String {
    let canonical = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
    let head = match canonical {
        Some(r) => format!("HTTP {status} {r}"),
        None => format!("HTTP {status}"),
    };
    let reason = if body.trim_start().starts_with('<') {
        html_text(body)
    } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        ["message", "Message", "error", "__type"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_default()
    } else {
        body.to_string()
    };
    let reason = one_line(&reason);
    if reason.is_empty() || canonical.is_some_and(|c| c.eq_ignore_ascii_case(&reason)) {
        head
    } else {
        format!("{head}: {reason}")
    }
}

/// The readable text of an HTML page: its `<title>`, else its text without tags, scripts or styles.
fn html_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    if let Some(start) = lower.find("<title>").map(|i| i + "<title>".len())
        && let Some(len) = lower[start..].find("</title>")
        && !html[start..start + len].trim().is_empty()
    {
        return html[start..start + len].to_string();
    }
    let mut text = String::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        text.push(' ');
        let tag = rest[open..].to_ascii_lowercase();
        // Skip what a script or a style contains, not only its tags.
        let skip_to = ["script", "style"]
            .iter()
            .find(|t| tag.starts_with(&format!("<{t}")))
            .and_then(|t| tag.find(&format!("</{t}>")).map(|i| i + t.len() + 3));
        let end = skip_to.or_else(|| rest[open..].find('>').map(|i| i + 1)).unwrap_or(rest.len() - open);
        rest = &rest[open + end..];
    }
    text.push_str(rest);
    text
}

/// `text` on one line, whitespace collapsed, at most [`MAX_MESSAGE`] characters.
pub(super) fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_MESSAGE {
        return line;
    }
    let cut: String = line.chars().take(MAX_MESSAGE).collect();
    format!("{}…", cut.trim_end())
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

/// The IAM action an AWS denial names: `... is not authorized to perform: iam:PassRole on ...`.
fn denied_action(message: &str) -> Option<&str> {
    let rest = &message[message.find("not authorized to perform: ")? + "not authorized to perform: ".len()..];
    let action = rest.split(|c: char| c.is_whitespace() || c == ',' || c == ';').next()?.trim_end_matches('.');
    action.contains(':').then_some(action)
}

/// The classification behind [`aws_error`], separated so that it can be tested without the SDK.
pub(crate) fn classify(action: &str, code: &str, message: &str) -> BackendError {
    if ACCESS_DENIED.contains(&code) {
        match denied_action(message).filter(|denied| !denied.eq_ignore_ascii_case(action)) {
            // Another action behind the call: `iam:PassRole` of a FIS template, KMS of a secret.
            Some(denied) => BackendError::Api(format!(
                "access denied: `{action}` needs `{denied}`, which the credentials may not perform ({code}: {message}); grant `{denied}` to the role siege runs as (see docs/aws.md)"
            )),
            None => BackendError::Api(format!(
                "access denied: the credentials may not call `{action}` ({code}: {message}); grant `{action}` to the role siege runs as (see docs/aws.md)"
            )),
        }
    } else if BAD_CREDENTIALS.contains(&code) {
        BackendError::Api(format!("{}: the AWS credentials were rejected ({code}: {message})", call_name(action)))
    } else if NOT_FOUND.contains(&code) {
        BackendError::NotFound(format!("{}: {message}", call_name(action)))
    } else if code.is_empty() {
        BackendError::Api(format!("{}: {message}", call_name(action)))
    } else {
        BackendError::Api(format!("{}: {code}: {message}", call_name(action)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_names_the_missing_action() {
        let e = classify("ecs:StopTask", "AccessDeniedException", "User: arn:aws:iam::1:user/x is not authorized");
        let msg = e.to_string();
        assert!(msg.contains("access denied"), "{msg}");
        assert!(msg.contains("`ecs:StopTask`"), "{msg}");
    }

    #[test]
    fn access_denied_names_the_action_aws_names() {
        let e = classify(
            "fis:CreateExperimentTemplate",
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: iam:PassRole on resource: arn:aws:iam::123456789012:role/siege-fis",
        );
        let msg = e.to_string();
        assert!(msg.contains("`fis:CreateExperimentTemplate` needs `iam:PassRole`"), "{msg}");
        assert!(msg.contains("grant `iam:PassRole`"), "{msg}");
        // Naming the call itself keeps the plain message.
        let e = classify(
            "ecs:StopTask",
            "AccessDeniedException",
            "User: x is not authorized to perform: ecs:StopTask on resource: y",
        );
        assert!(e.to_string().contains("may not call `ecs:StopTask`"), "{e}");
        let e =
            classify("ecs:StopTask", "AccessDeniedException", "User: x is not authorized to perform: ecs:StopTask.");
        assert!(e.to_string().contains("may not call `ecs:StopTask`"), "a full stop is not part of the action: {e}");
    }

    #[test]
    fn xml_error_bodies_are_read() {
        let body = "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>";
        assert_eq!(xml_value(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(xml_value(body, "Message").as_deref(), Some("no"));
        assert_eq!(xml_value(body, "Type"), None);
    }

    #[test]
    fn a_non_aws_answer_is_its_status_and_a_short_reason() {
        let html = "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title>\n<style>p {}</style></head>\n\
            <body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>";
        assert_eq!(http_reason(500, html), "HTTP 500 Internal Server Error: 500 Internal Server Error");
        let untitled = "<html><head><script>var x = 1;</script></head><body><h1>Bad\n  gateway</h1></body></html>";
        assert_eq!(http_reason(502, untitled), "HTTP 502 Bad Gateway");
        assert_eq!(
            http_reason(503, "<html><body><p>Try again  later</p></body></html>"),
            "HTTP 503 Service Unavailable: Try again later"
        );
        assert_eq!(http_reason(500, r#"{"message":"boom"}"#), "HTTP 500 Internal Server Error: boom");
        assert_eq!(http_reason(500, ""), "HTTP 500 Internal Server Error");
        let long = "x".repeat(5000);
        assert!(http_reason(500, &long).chars().count() < MAX_MESSAGE + 40);
    }

    #[test]
    fn messages_are_one_short_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
        assert_eq!(one_line(&"y".repeat(1000)).chars().count(), MAX_MESSAGE + 1);
        let e = classify("cloudwatch:GetMetricData", "InternalFailure", "boom");
        assert_eq!(e.to_string(), "cloudwatch GetMetricData: InternalFailure: boom");
    }

    #[test]
    fn missing_resources_are_not_found() {
        let e = classify("rds:DescribeDBClusters", "DBClusterNotFoundFault", "DBCluster prod-db not found");
        assert!(matches!(e, BackendError::NotFound(_)));
        assert!(e.to_string().contains("prod-db"));
    }

    #[test]
    fn other_errors_keep_code_and_message() {
        let e = classify("fis:StartExperiment", "ValidationException", "bad role");
        assert_eq!(e.to_string(), "fis StartExperiment: ValidationException: bad role");
    }
}
