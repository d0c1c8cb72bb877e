//! REST errors, each declared once with its HTTP status and JSON body `{"error": "..."}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::adapter::AdapterError;
use crate::auth::rest::RestAuthError;

/// Everything a REST call can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404: unknown app or path.
    NotFound(String),
    /// 405: known path, wrong method.
    MethodNotAllowed,
    /// 401: signature, key, timestamp, version or body_md5 problem.
    Unauthorized(RestAuthError),
    /// 403: app disabled.
    Forbidden(String),
    /// 400: invalid body or parameters.
    BadRequest(String),
    /// 413: body or event data above the limit.
    TooLarge(String),
    /// 503: the adapter (e.g. Redis) cannot answer.
    Unavailable(AdapterError),
    /// 429: the app's REST rate limit; retry after this many seconds.
    TooManyRequests(u64),
    /// 503: the app store (database) cannot answer for this app now.
    StoreUnavailable,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The message in the body.
    pub fn message(&self) -> String {
        match self {
            ApiError::NotFound(m)
            | ApiError::Forbidden(m)
            | ApiError::BadRequest(m)
            | ApiError::TooLarge(m) => m.clone(),
            ApiError::MethodNotAllowed => "Method not allowed".into(),
            ApiError::Unauthorized(e) => e.to_string(),
            ApiError::Unavailable(e) => e.to_string(),
            ApiError::TooManyRequests(_) => "Too many requests for this app".into(),
            ApiError::StoreUnavailable => "App store unavailable, retry later".into(),
        }
    }

    /// The response.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut r = json_response(
            self.status(),
            &serde_json::json!({ "error": self.message() }),
        );
        if let ApiError::TooManyRequests(secs) = self {
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(*secs),
            );
        }
        r
    }
}

impl From<AdapterError> for ApiError {
    fn from(e: AdapterError) -> Self {
        ApiError::Unavailable(e)
    }
}

/// A JSON response with `Content-Type: application/json`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
