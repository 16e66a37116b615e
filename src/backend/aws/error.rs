//! Turns AWS SDK errors into [`BackendError`]s with messages a person can act on: the IAM action
//! that was denied, the resource that is missing, the endpoint that cannot be reached.

use std::error::Error as StdError;
use std::fmt::Debug;

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
pub(crate) fn aws_error<E, R>(action: &str, err: SdkError<E, R>) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    match &err {
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
    let code = err.code().unwrap_or("").to_string();
    let message = err.message().map(str::to_string).unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    classify(action, &code, &message)
}

/// The classification behind [`aws_error`], separated so that it can be tested without the SDK.
pub(crate) fn classify(action: &str, code: &str, message: &str) -> BackendError {
    if ACCESS_DENIED.contains(&code) {
        BackendError::Api(format!(
            "access denied: the credentials may not call `{action}` ({code}: {message}); grant `{action}` to the role siege runs as (see docs/aws.md)"
        ))
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
