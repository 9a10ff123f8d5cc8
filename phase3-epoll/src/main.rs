//! `phase3-epoll`: the binary is the library's `main_from` with the
//! process's arguments (see `lib.rs`), so the bench harness can run exactly
//! the same program.

fn main() -> anyhow::Result<()> {
    phase3_epoll::main_from(std::env::args_os())
}
