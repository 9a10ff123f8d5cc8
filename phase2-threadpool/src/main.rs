//! `phase2-threadpool`: the library's `main_from` with the process's arguments.

fn main() -> anyhow::Result<()> {
    phase2_threadpool::main_from(std::env::args_os())
}
