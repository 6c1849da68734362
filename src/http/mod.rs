//! Pure HTTP semantics: ranges, preconditions, media types and multipart
//! layout. Nothing here does I/O or knows about axum; `response` turns the
//! decisions made here into responses.

pub mod conditional;
pub mod mime;
pub mod multipart;
pub mod range;
