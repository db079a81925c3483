//! Integration tests for `provisioners`.
mod cloud_digitalocean;
mod cloud_fakes;
mod cloud_gcp;
mod cloud_hetzner;
mod cloud_spec;
mod cloud_ssh;
mod docker;
mod docker_bench;
mod docker_common;
mod docker_image;
mod docker_lifecycle;
mod local_lifecycle;
mod local_measure;
mod local_provider;
mod local_restore;
mod local_store;
mod local_support;
