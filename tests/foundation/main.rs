//! Foundation (issue 2) against real PostgreSQL: the shared examples round-trip through the REST API

mod bodies;
mod common;
mod concurrency;
mod examples;
mod lifecycle;
mod rules;
