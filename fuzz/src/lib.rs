//! Fuzz targets of refcast's parsers; the bodies live in `bodies.rs` so that the repository's
//! tests can run them too.

pub mod bodies;
