//! Integration tests for `provisioners`.
mod cloud_digitalocean;
mod cloud_fakes;
mod docker;
mod docker_common;
mod cloud_hetzner;
mod cloud_gcp;
mod cloud_spec;
mod docker_bench;
mod cloud_ssh;
