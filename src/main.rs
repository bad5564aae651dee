//! `reproject`: rebuild event-sourced read models from the log, fast and exact, and cut
//! readers over with zero downtime. The command line with the bank's projections and the lab;
//! an application's binary is the same entry point with its own catalog.

fn main() -> std::process::ExitCode {
    reproject::main(reproject::bank())
}
