//! Turns AWS SDK errors into [`BackendError`]s with messages a person can act on: the IAM action
//! that was denied, the resource that is missing, the endpoint that cannot be reached.

use std::error::Error as StdError;

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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

/// Maps an SDK error of the call `action` (the IAM action name, e.g. `ecs:StopTask`) to a
/// [`BackendError`].
pub(crate) fn aws_error<E>(action: &str, err: SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match &err {
        // Identity resolution fails before anything is sent and surfaces as a dispatch failure.
        SdkError::DispatchFailure(_) if DisplayErrorContext(&err).to_string().contains("credential") => {
            return BackendError::Api(format!(
                "{action}: no usable AWS credentials (siege uses the standard chain: environment, profile, SSO, instance role): {}",
                DisplayErrorContext(&err)
            ));
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return BackendError::Api(format!(
                "{action}: cannot reach the AWS endpoint ({}); check the network, `endpoint:` or AWS_ENDPOINT_URL",
                DisplayErrorContext(&err)
            ));
        }
        SdkError::ConstructionFailure(_) => {
            return BackendError::Api(format!(
                "{action}: the request could not be built ({}); are credentials and a region configured?",
                DisplayErrorContext(&err)
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
        if let Some(c) = xml_value(&body, "Code") {
            code = c;
            message = xml_value(&body, "Message").or(message);
        } else if raw.status().as_u16() == 403 {
            code = "AccessDenied".into();
        }
    }
    let message = message.unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    classify(action, &code, &message)
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
        BackendError::Api(format!("{action}: the AWS credentials were rejected ({code}: {message})"))
    } else if NOT_FOUND.contains(&code) {
        BackendError::NotFound(format!("{action}: {message}"))
    } else if code.is_empty() {
        BackendError::Api(format!("{action} failed: {message}"))
    } else {
        BackendError::Api(format!("{action} failed: {code}: {message}"))
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
    fn missing_resources_are_not_found() {
        let e = classify("rds:DescribeDBClusters", "DBClusterNotFoundFault", "DBCluster prod-db not found");
        assert!(matches!(e, BackendError::NotFound(_)));
        assert!(e.to_string().contains("prod-db"));
    }

    #[test]
    fn other_errors_keep_code_and_message() {
        let e = classify("fis:StartExperiment", "ValidationException", "bad role");
        assert_eq!(e.to_string(), "fis:StartExperiment failed: ValidationException: bad role");
    }
}
