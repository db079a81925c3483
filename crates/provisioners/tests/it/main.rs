//! Integration tests for `provisioners`. The cloud and Docker tests need their cargo
//! features (both on by default).
#[cfg(feature = "cloud")]
mod cloud_digitalocean;
#[cfg(feature = "cloud")]
mod cloud_fakes;
#[cfg(feature = "cloud")]
mod cloud_gcp;
#[cfg(feature = "cloud")]
mod cloud_hetzner;
#[cfg(feature = "cloud")]
mod cloud_spec;
#[cfg(feature = "cloud")]
mod cloud_ssh;
#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "docker")]
mod docker_bench;
#[cfg(feature = "docker")]
mod docker_common;
#[cfg(feature = "docker")]
mod docker_image;
#[cfg(feature = "docker")]
mod docker_lifecycle;
mod local_lifecycle;
mod local_measure;
mod local_provider;
mod local_restore;
mod local_seal;
mod local_store;
mod local_support;
mod workdir_guard;
