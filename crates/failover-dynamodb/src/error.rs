//! Errors of the DynamoDB sink, and the one place SDK errors are classified.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use failover_usage::UsageError;

/// Why an operation of the DynamoDB sink failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DynamoDbError {
    /// The configuration is incomplete or invalid.
    #[error("dynamodb sink configuration: {0}")]
    Config(String),
    /// A DynamoDB call failed.
    #[error("dynamodb {operation} failed ({}): {message}", if *.retryable { "temporary" } else { "permanent" })]
    Sdk {
        /// The API operation (`TransactWriteItems`, `Query`, ...).
        operation: &'static str,
        /// The service's error code, when it sent one (`ThrottlingException`, ...).
        code: Option<String>,
        /// Whether retrying later can succeed (throttling, 5xx, timeouts, connection
        /// failures).
        retryable: bool,
        /// What happened.
        message: String,
    },
    /// A stored item could not be read back as a usage record or an aggregate.
    #[error("dynamodb item does not map to a usage record: {0}")]
    Mapping(String),
    /// The local spill file failed.
    #[error("usage spill file {path}: {source}")]
    Spill {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another live sink (in this process or another) holds the spill file's lock
    /// (`{path}.lock`). Two sinks sharing one spill file would replay and rewrite each
    /// other's records; give each sink its own file.
    #[error(
        "usage spill file {path} is in use by another sink (its lock file {path}.lock is held); give each sink its own spill path"
    )]
    SpillLocked {
        /// The spill file.
        path: String,
    },
}

impl DynamoDbError {
    /// Whether retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DynamoDbError::Sdk {
                retryable: true,
                ..
            }
        )
    }

    /// The service's error code, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            DynamoDbError::Sdk { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl From<DynamoDbError> for UsageError {
    fn from(error: DynamoDbError) -> Self {
        UsageError::Store(error.to_string())
    }
}

/// Service error codes that mean "try again later".
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// Whether a service error code means "try again later".
pub(crate) fn is_retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// Classifies an SDK error once, at the boundary: timeouts, connection failures,
/// unparseable responses, throttling and 5xx are temporary; everything else is permanent.
pub(crate) fn classify<E>(
    operation: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> DynamoDbError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = DisplayErrorContext(error).to_string();
    match error {
        SdkError::ServiceError(context) => {
            let code = context.err().code().map(str::to_owned);
            let status = context.raw().status().as_u16();
            let retryable = status >= 500 || code.as_deref().is_some_and(is_retryable_code);
            DynamoDbError::Sdk {
                operation,
                code,
                retryable,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => DynamoDbError::Sdk {
            operation,
            code: None,
            retryable: false,
            message,
        },
        // Timeouts, dispatch (connection) failures and unreadable responses: the request
        // may or may not have been applied, so the retry relies on idempotent writes.
        _ => DynamoDbError::Sdk {
            operation,
            code: None,
            retryable: true,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retryable_others_are_not() {
        assert!(is_retryable_code("ThrottlingException"));
        assert!(is_retryable_code("ProvisionedThroughputExceededException"));
        assert!(is_retryable_code("TransactionConflictException"));
        assert!(!is_retryable_code("ValidationException"));
        assert!(!is_retryable_code("ResourceNotFoundException"));
        assert!(!is_retryable_code("AccessDeniedException"));
        let error = DynamoDbError::Sdk {
            operation: "Query",
            code: Some("ThrottlingException".into()),
            retryable: true,
            message: "slow down".into(),
        };
        assert!(error.is_retryable());
        assert_eq!(error.code(), Some("ThrottlingException"));
        assert!(error.to_string().contains("temporary"), "{error}");
        let usage: UsageError = error.into();
        assert!(matches!(usage, UsageError::Store(_)));
    }
}
