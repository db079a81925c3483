//! Cold start, background snapshot, warm start: headstart end to end.

fn main() {}
