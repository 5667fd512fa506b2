//! The parts of the `refcast` command line that touch files and the standard streams: bounded
//! reads, output that never destroys what it replaces, signals, and closed or full streams.

pub mod input;
pub mod output;
pub mod signals;
#[macro_use]
pub mod stdio;
