//! Pure HTTP semantics: ranges, preconditions, media types, multipart
//! layout, request framing checks, `Accept`, the query parameters and
//! `Content-Disposition`, operator header rules and CORS. Nothing here does I/O or knows about axum; `response` turns the
//! decisions made here into responses.

pub mod accept;
pub mod conditional;
pub mod cors;
pub mod disposition;
pub mod encoding;
pub mod forwarded;
pub mod host;
pub mod mime;
#[cfg(any(test, fuzzing))]
pub mod model;
pub mod multipart;
pub mod query;
pub mod range;
pub mod rules;
