//! The app's reproject: the whole `reproject` command line (replay, live, verify, cutover,
//! rollback, repair, snapshot, api, load, adopt, ...) with the app's own projections.

fn main() -> std::process::ExitCode {
    reproject::main(reproject_example_orders::catalog())
}
