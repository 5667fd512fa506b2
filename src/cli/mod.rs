//! The parts of the `refcast` command line around the library: bounded reads, output that never
//! destroys what it replaces, signals, closed or full streams, and the layout of what it prints.

pub mod html;
pub mod info;
pub mod input;
pub mod output;
pub mod signals;
#[macro_use]
pub mod stdio;
// After `stdio`, whose `note!` they use.
pub mod enrichment;
pub mod report;
pub mod sample;
