//! The `headstart` command line. A thin layer: it parses arguments, wires the crates
//! together and renders progress and reports; no logic a library user needs lives here.

fn main() {}
