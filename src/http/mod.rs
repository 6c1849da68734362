//! Pure HTTP semantics: ranges, preconditions, media types, multipart
//! layout and request framing checks. Nothing here does I/O or knows about axum; `response` turns the
//! decisions made here into responses.

pub mod conditional;
pub mod encoding;
pub mod host;
pub mod mime;
#[cfg(any(test, fuzzing))]
pub mod model;
pub mod multipart;
pub mod range;
