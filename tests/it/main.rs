//! Integration tests: one binary, a module per area. Real processes, real sockets, real files.

mod aws;
mod client;
mod commands;
mod common;
mod compare;
mod daemon;
mod endpoint;
mod engine;
mod events;
mod gameday;
mod lab;
mod load;
mod recover;
mod report;
mod validate;
