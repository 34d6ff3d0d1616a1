//! Faults met talking to storage and networks, and what they mean for the work: whether
//! trying again could help ([`transient_cause`]), whether every write to the same storage
//! would meet the same refusal ([`refusal_cause`]), and the typed error of a remote read
//! ([`RemoteError`]) that sources and repositories share.
//!
//! Invariants: decisions are made from typed causes (HTTP statuses, `object_store` variants
//! and HTTP error kinds, the S3 SDK's connector errors and error codes, Icechunk's
//! throttling kind, I/O error kinds), never from text, except for the status of an S3/GCS
//! error that `object_store` reports only in its message; no error carries a credential:
//! URLs are the objects' own addresses.

use crate::error_chain;

/// Why a remote object could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied (HTTP {status})")]
    Denied { url: String, status: u16 },
    #[error("{url}: HTTP {status}{}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        reason: Option<String>,
    },
    #[error("{url}: {kind}: {message}")]
    Network {
        url: String,
        kind: NetworkKind,
        message: String,
    },
    #[error("{url}: {message}")]
    Other { url: String, message: String },
    #[error("{0:?} is not a gs://, s3:// or http(s):// URL")]
    BadUrl(String),
}

/// What kind of network trouble met a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkKind {
    #[error("cannot connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    #[error("connection dropped")]
    Interrupted,
    #[error("request failed")]
    Request,
    #[error("bad response")]
    Decode,
}

impl RemoteError {
    /// Whether trying again later could succeed: server errors (5xx), throttling (429),
    /// timeouts and connection trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Network { kind, .. } => !matches!(kind, NetworkKind::Decode),
            _ => false,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Denied { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub(crate) fn from_status(url: &str, status: u16, reason: Option<&str>) -> RemoteError {
    match status {
        404 | 410 => RemoteError::NotFound {
            url: url.to_string(),
        },
        401 | 403 => RemoteError::Denied {
            url: url.to_string(),
            status,
        },
        _ => RemoteError::Status {
            url: url.to_string(),
            status,
            reason: reason.map(str::to_string),
        },
    }
}

pub(crate) fn network_error(url: &str, e: &reqwest::Error) -> RemoteError {
    let kind = if e.is_timeout() {
        NetworkKind::Timeout
    } else if e.is_connect() {
        NetworkKind::Connect
    } else if e.is_decode() || e.is_body() {
        NetworkKind::Interrupted
    } else {
        NetworkKind::Request
    };
    RemoteError::Network {
        url: url.to_string(),
        kind,
        message: error_chain(e),
    }
}

/// An `object_store` error, classified by its typed variants and the network error in its
/// chain. Its HTTP status, when the server answered with one that has no variant of its
/// own, is only in its message: that is read as the last resort.
pub(crate) fn classify_store_error(url: &str, e: object_store::Error) -> RemoteError {
    use object_store::Error as E;
    match &e {
        E::NotFound { .. } => {
            return RemoteError::NotFound {
                url: url.to_string(),
            };
        }
        E::PermissionDenied { .. } => {
            return RemoteError::Denied {
                url: url.to_string(),
                status: 403,
            };
        }
        E::Unauthenticated { .. } => {
            return RemoteError::Denied {
                url: url.to_string(),
                status: 401,
            };
        }
        _ => {}
    }
    let message = error_chain(&e);
    if let Some(kind) = network_kind(&e) {
        return RemoteError::Network {
            url: url.to_string(),
            kind,
            message,
        };
    }
    match status_in_message(&message) {
        Some(status) => from_status(url, status, None),
        None => RemoteError::Other {
            url: url.to_string(),
            message,
        },
    }
}

/// The network trouble in an error's chain, told by the typed cause: the object store's
/// HTTP error kind or an I/O error's kind. `None` when no cause is one of these.
pub fn network_kind(e: &(dyn std::error::Error + 'static)) -> Option<NetworkKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            match h.kind() {
                K::Connect => return Some(NetworkKind::Connect),
                K::Timeout => return Some(NetworkKind::Timeout),
                K::Interrupted => return Some(NetworkKind::Interrupted),
                K::Request => return Some(NetworkKind::Request),
                K::Decode => return Some(NetworkKind::Decode),
                _ => {}
            }
        }
        if let Some(kind) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io_kind(io.kind()))
        {
            return Some(kind);
        }
        // The S3 SDK's failure to send a request or read its answer.
        if let Some(e) = c.downcast_ref::<aws_smithy_runtime_api::client::result::ConnectorError>()
        {
            if e.is_timeout() {
                return Some(NetworkKind::Timeout);
            }
            if e.is_io() {
                return Some(NetworkKind::Interrupted);
            }
        }
        cause = c.source();
    }
    None
}

/// Whether an S3 error code (the SDK's error metadata) says trying again could help:
/// throttling, internal errors and timeouts do; denials and missing buckets do not.
/// `None` for a code that says neither.
fn s3_code_is_transient(code: &str) -> Option<bool> {
    match code {
        "SlowDown"
        | "InternalError"
        | "ServiceUnavailable"
        | "RequestTimeout"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "OperationAborted" => Some(true),
        "AccessDenied"
        | "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "NoSuchBucket"
        | "AllAccessDisabled"
        | "InvalidBucketName"
        | "AccountProblem" => Some(false),
        _ => None,
    }
}

/// Network trouble told by an I/O error's kind.
pub fn io_kind(kind: std::io::ErrorKind) -> Option<NetworkKind> {
    use std::io::ErrorKind as K;
    match kind {
        K::TimedOut => Some(NetworkKind::Timeout),
        K::ConnectionRefused | K::NotConnected | K::HostUnreachable | K::NetworkUnreachable => {
            Some(NetworkKind::Connect)
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            Some(NetworkKind::Interrupted)
        }
        _ => None,
    }
}

/// The status in `object_store`'s "Server returned non-2xx status code: 503 …" message.
fn status_in_message(message: &str) -> Option<u16> {
    let rest = message.split("status code: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
}

/// Whether a typed cause in an error's chain says if retrying could help: network errors
/// by their kind, I/O errors by theirs, object-store errors by their variant and status.
/// `None` when no cause in the chain is one of these.
pub fn transient_cause(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    if let Some(kind) = network_kind(e) {
        return Some(kind != NetworkKind::Decode);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RemoteError>() {
            return Some(r.is_transient());
        }
        if let Some(meta) = c.downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
            && let Some(transient) = meta.code().and_then(s3_code_is_transient)
        {
            return Some(transient);
        }
        if let Some(s) = c.downcast_ref::<icechunk::storage::StorageError>()
            && s.kind().is_throttled()
        {
            return Some(true);
        }
        if let Some(o) = c.downcast_ref::<object_store::Error>() {
            use object_store::Error as E;
            match o {
                E::NotFound { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::AlreadyExists { .. }
                | E::Precondition { .. } => return Some(false),
                E::Generic { .. } => {
                    if let Some(status) = status_in_message(&o.to_string()) {
                        return Some(status >= 500 || status == 429);
                    }
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    None
}

/// Whether an error's chain holds a refusal that every write to the same storage would
/// meet: permission denied, a read-only or full file system or quota (I/O error kinds), or
/// an object store's denial of the credentials (`object_store`'s, or S3's error code).
pub fn refusal_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(meta) = c.downcast_ref::<aws_smithy_types::error::ErrorMetadata>()
            && matches!(
                meta.code(),
                Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem")
            )
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::PermissionDenied | K::ReadOnlyFilesystem | K::StorageFull | K::QuotaExceeded
            )
        {
            return true;
        }
        if let Some(o) = c.downcast_ref::<object_store::Error>()
            && matches!(
                o,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_network_kinds_decide_transience() {
        let s = |status| from_status("http://h/x", status, None);
        assert!(s(503).is_transient());
        assert!(s(500).is_transient());
        assert!(s(429).is_transient(), "throttling is retried");
        assert!(!s(400).is_transient());
        assert!(matches!(s(404), RemoteError::NotFound { .. }));
        assert!(matches!(s(403), RemoteError::Denied { .. }));
        assert!(!s(403).is_transient());
        let net = |kind| RemoteError::Network {
            url: "u".into(),
            kind,
            message: String::new(),
        };
        assert!(net(NetworkKind::Timeout).is_transient());
        assert!(net(NetworkKind::Connect).is_transient());
        assert!(!net(NetworkKind::Decode).is_transient());
        assert_eq!(
            io_kind(std::io::ErrorKind::ConnectionReset),
            Some(NetworkKind::Interrupted)
        );
        assert_eq!(io_kind(std::io::ErrorKind::InvalidData), None);
    }

    /// An error whose cause is `inner`, as the S3 SDK chains a service error's metadata.
    #[derive(Debug, thiserror::Error)]
    #[error("committing")]
    struct Outer(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn s3_error_codes_and_connector_errors_decide_transience() {
        let code = |c: &str| {
            let meta = aws_smithy_types::error::ErrorMetadata::builder()
                .code(c)
                .message("m")
                .build();
            transient_cause(&Outer(Box::new(meta)))
        };
        assert_eq!(code("SlowDown"), Some(true));
        assert_eq!(code("InternalError"), Some(true));
        assert_eq!(code("AccessDenied"), Some(false));
        assert_eq!(code("NoSuchBucket"), Some(false));
        assert_eq!(code("SomethingElse"), None);
        let refused = |c: &str| {
            let meta = aws_smithy_types::error::ErrorMetadata::builder()
                .code(c)
                .message("m")
                .build();
            refusal_cause(&Outer(Box::new(meta)))
        };
        assert!(
            refused("AccessDenied"),
            "a denied bucket refuses every write"
        );
        assert!(!refused("SlowDown"));
        assert!(!refused("NoSuchKey"));
        let timeout =
            aws_smithy_runtime_api::client::result::ConnectorError::timeout("no answer".into());
        assert_eq!(transient_cause(&Outer(Box::new(timeout))), Some(true));
        let io = aws_smithy_runtime_api::client::result::ConnectorError::io("reset".into());
        assert_eq!(
            network_kind(&Outer(Box::new(io))),
            Some(NetworkKind::Interrupted)
        );
        let throttled = icechunk::storage::StorageError::capture(
            icechunk::storage::StorageErrorKind::Throttled {
                code: "SlowDown".into(),
                message: "m".into(),
            },
        );
        assert_eq!(transient_cause(&Outer(Box::new(throttled))), Some(true));
    }

    #[test]
    fn status_is_read_from_object_store_messages_only_after_its_marker() {
        assert_eq!(
            status_in_message(
                "Error performing GET in 1ms - Server returned non-2xx status code: 503 Service Unavailable: "
            ),
            Some(503)
        );
        assert_eq!(status_in_message("Not enough data at scanline 15000"), None);
        assert_eq!(status_in_message("status code: 5000"), None);
    }
}
