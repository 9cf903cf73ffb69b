//! The `okta-emulator` binary.
fn main() {}
