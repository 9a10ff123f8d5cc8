//! Prints the size of the state machine the compiler generated for one
//! connection (`exchange::serve_connection`'s future): the memory each
//! connection's task needs besides its socket and buffers.
//!
//! ```console
//! $ cargo run --release -p phase4-async --example task_size
//! ```

use std::sync::Arc;

use phase4_async::{Context, exchange};
use proxy_core::{Config, Mode};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server_side, _) = listener.accept().await?;
    let ctx = Arc::new(Context::new(Config::new(Mode::Forward)));

    // Creating a future runs none of its code: it is just the enum, in its
    // initial state, waiting to be polled. Its size is that of its largest
    // state (every variable alive across some `.await`, of every nested
    // async fn on the deepest path).
    let connection = exchange::serve_connection(server_side, &ctx);
    println!(
        "serve_connection future: {} bytes",
        std::mem::size_of_val(&connection)
    );
    drop(connection);
    drop(client);
    Ok(())
}
