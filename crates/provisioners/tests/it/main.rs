//! Integration tests for `provisioners`.
mod docker;
mod docker_common;
