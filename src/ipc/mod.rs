//! Inter-process protocols between the supervisor and its workers.

pub mod control;
