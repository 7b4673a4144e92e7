//! The spec's error codes and statuses, and the one JSON body shape every
//! error response has: `{"errors":[{"code","message","detail"}]}`.

use std::fmt;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unavailable,
    Unknown,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub status: StatusCode,
    pub message: String,
    pub detail: Option<Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside (a backend's or an upstream's own error,
    /// with its endpoint, bucket or URL): logged with a request id, never
    /// sent; the client gets the id to quote.
    pub internal: Option<String>,
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            status: code.default_status(),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
            internal: None,
        }
    }

    /// An error whose cause stays in the log: `message` is what the client
    /// reads, `cause` what the operator reads, joined by a request id.
    pub fn internal(code: Code, message: impl Into<String>, cause: impl fmt::Display) -> ApiError {
        ApiError {
            internal: Some(cause.to_string()),
            ..ApiError::new(code, message)
        }
    }

    pub fn status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.retain(|(n, _)| n != name);
            self.headers.push((name, v));
        }
        self
    }

    /// Tells the client the connection ends with this response: used when
    /// the request body was not (fully) read, so the client sees the error
    /// instead of a reset in the middle of its upload.
    pub fn close_connection(self) -> ApiError {
        self.header(header::CONNECTION, "close")
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        let mut request_id = None;
        if let Some(cause) = &self.internal {
            let id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(request_id = %id, code = self.code.as_str(), message = %self.message, cause = %cause, "request failed");
            self.message = format!(
                "{} (request id {id}: the registry's log has the cause)",
                self.message
            );
            request_id = Some(id);
        } else if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(detail) = self.detail {
            error["detail"] = detail;
        }
        if let Some(id) = &request_id {
            self.headers.push((
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_str(id).expect("hex"),
            ));
            match &mut error["detail"] {
                Value::Object(d) => {
                    d.insert("request_id".into(), json!(id));
                }
                d @ Value::Null => *d = json!({ "request_id": id }),
                _ => {}
            }
        }
        let body = json!({ "errors": [error] }).to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        // Every 429 says when to come back (distribution-spec main).
        if self.status == StatusCode::TOO_MANY_REQUESTS
            && !response.headers().contains_key(header::RETRY_AFTER)
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn every_429_has_retry_after() {
        let r = ApiError::new(Code::TooManyRequests, "slow down").into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::new(Code::Denied, "busy")
            .status(StatusCode::TOO_MANY_REQUESTS)
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::new(Code::TooManyRequests, "x")
            .header(header::RETRY_AFTER, "7")
            .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let r = ApiError::new(Code::Denied, "no").into_response();
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}
