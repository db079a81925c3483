//! Integration tests for `git-broker`: the real `git` CLI (isolated configuration, no
//! credentials) clones, fetches and pushes through a broker on loopback whose
//! upstream is `git http-backend` demanding a token (test-support's smart-HTTP server).

mod fetch;
mod fixture;
mod grants;
mod push;
mod speed;
