//! Integration tests for `test-support`: the fixtures against the real git CLI.

mod servers;
mod upstream;
