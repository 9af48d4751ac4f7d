//! WASI stdout/stderr of actors, forwarded to the host's log tagged with the actor id.
//!
//! The last lines an instance wrote to stderr are also kept, so that when it traps
//! (a Rust `panic!`, a Go `panic`) the caller's error can say *why*, not only
//! "unreachable executed".

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line we buffer before logging it anyway.
const MAX_LINE: usize = 8 * 1024;
/// How much recent stderr text we keep for trap messages.
const TAIL_BYTES: usize = 512;

/// Recent stderr text of one instance, shared with the runtime.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<String>>);

impl StderrTail {
    /// Forgets what was written so far (at the start of each call).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The recent stderr text, trimmed; `None` when nothing was written.
    pub fn get(&self) -> Option<String> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let t = s.trim();
        (!t.is_empty()).then(|| t.replace('\n', " | "))
    }

    fn push_line(&self, line: &str) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.push_str(line);
        s.push('\n');
        if s.len() > TAIL_BYTES {
            let mut cut = s.len() - TAIL_BYTES;
            while !s.is_char_boundary(cut) {
                cut += 1;
            }
            s.drain(..cut);
        }
    }
}

/// Which standard stream of the actor.
#[derive(Clone, Copy, Debug)]
pub enum Stdio {
    /// fd 1
    Stdout,
    /// fd 2
    Stderr,
}

/// A WASI output stream that logs complete lines through `tracing`.
#[derive(Clone)]
pub struct LogStream {
    actor: Arc<str>,
    which: Stdio,
    tail: Option<StderrTail>,
}

impl LogStream {
    /// A stream for `actor`'s stdout or stderr; stderr lines also go to `tail`.
    pub fn new(actor: Arc<str>, which: Stdio, tail: Option<StderrTail>) -> Self {
        LogStream { actor, which, tail }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    stream: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let actor = &*self.stream.actor;
        match self.stream.which {
            Stdio::Stdout => {
                tracing::info!(target: "lattice::actor", actor, stream = "stdout", "{text}")
            }
            Stdio::Stderr => {
                tracing::warn!(target: "lattice::actor", actor, stream = "stderr", "{text}")
            }
        }
        if let Some(tail) = &self.stream.tail {
            tail.push_line(&text);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &b in buf {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}
