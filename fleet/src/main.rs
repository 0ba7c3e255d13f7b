//! Operator CLI placeholder
fn main() {}
