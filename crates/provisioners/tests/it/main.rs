//! Integration tests for `provisioners`.
mod cloud_digitalocean;
mod cloud_fakes;
mod docker;
mod docker_common;
