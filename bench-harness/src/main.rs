//! `bench-harness`: the library's `main_from` with the process's arguments.

fn main() -> anyhow::Result<()> {
    bench_harness::main_from(std::env::args_os())
}
