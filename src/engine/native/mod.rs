//! The native engine: services without an image, each run by devbox's own namespace
//! runner in a sandbox of its own.

pub mod net;
