//! Integration tests: one binary, a module per area. Real processes, real sockets, real files.

mod common;
mod engine;
mod lab;
mod load;
mod report;
mod validate;
mod aws;
