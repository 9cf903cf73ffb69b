//! Benchmarks of the registrar. Every figure is reported as a ratio against
//! a baseline measured in the same run, with baseline and subject runs
//! interleaved to cancel drift from other load on the machine.
//!
//! Each benchmark is a module with a `run` function and a binary in
//! `src/bin/` that parses its options; BENCHMARKS.md lists the commands and
//! the last results.

pub mod bulk;
pub mod echo;
pub mod economy;
pub mod env;
pub mod load;
pub mod signing;
pub mod stats;
pub mod system;
pub mod tokens;
pub mod watchers;
