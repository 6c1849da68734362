//! Request-path failures and the status each one gets. Client errors carry a
//! short fixed text; server errors are logged with their cause and answered
//! with a generic text: never an OS message or a path.

use crate::fs::FsError;
use crate::path::PathError;
use http::StatusCode;

/// Why a request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// Malformed request (bad path, missing or repeated Host).
    #[error("bad request")]
    BadRequest,
    /// Nothing to serve here.
    #[error("not found")]
    NotFound,
    /// The file exists but may not be read.
    #[error("forbidden")]
    Forbidden,
    /// Method other than GET or HEAD.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A transfer coding the server does not know (the connection closes).
    #[error("not implemented")]
    NotImplemented,
    /// Out of descriptors or memory: try again shortly.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Unexpected I/O failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServeError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest => StatusCode::BAD_REQUEST,
            ServeError::NotFound => StatusCode::NOT_FOUND,
            ServeError::Forbidden => StatusCode::FORBIDDEN,
            ServeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ServeError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ServeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text sent to the client.
    pub fn public_text(&self) -> &'static str {
        match self {
            ServeError::BadRequest => "400 bad request\n",
            ServeError::NotFound => "404 not found\n",
            ServeError::Forbidden => "403 forbidden\n",
            ServeError::MethodNotAllowed => "405 method not allowed\n",
            ServeError::NotImplemented => "501 transfer coding not implemented\n",
            ServeError::Unavailable(_) => "503 service unavailable, try again\n",
            ServeError::Internal(_) => "500 internal server error\n",
        }
    }
}

impl From<FsError> for ServeError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::NotFound => ServeError::NotFound,
            FsError::Forbidden => ServeError::Forbidden,
            FsError::Unavailable(errno) => ServeError::Unavailable(errno.to_string()),
            FsError::Io(errno) => ServeError::Internal(errno.to_string()),
        }
    }
}

impl From<PathError> for ServeError {
    fn from(e: PathError) -> Self {
        match e {
            PathError::Invalid => ServeError::BadRequest,
            PathError::Hidden | PathError::TooLong => ServeError::NotFound,
        }
    }
}
