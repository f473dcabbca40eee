//! Line-by-line forwarding of the ranks' output.
//!
//! Each rank's stdout and stderr go through a [`LineBuffer`]: bytes are held
//! until a newline completes the line, then the whole line (with the
//! optional `[rank] ` tag) is written at once, so two ranks' bytes never
//! share a line. A line longer than [`MAX_LINE`] is cut there, to bound the
//! memory a rank that never prints a newline can take.

use std::io::Write;

/// Longest line kept in memory before it is forwarded in pieces.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// Partial-line state of one output stream.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Takes bytes read from the stream and appends every completed line,
    /// prefixed by `tag`, to `out`.
    pub(crate) fn push(&mut self, mut bytes: &[u8], tag: &[u8], out: &mut Vec<u8>) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(newline + 1);
            out.extend_from_slice(tag);
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(line);
            self.pending.clear();
            bytes = rest;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAX_LINE {
            self.finish(tag, out);
        }
    }

    /// The stream ended: forwards a last line that had no newline.
    pub(crate) fn finish(&mut self, tag: &[u8], out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            out.extend_from_slice(tag);
            out.extend_from_slice(&self.pending);
            out.push(b'\n');
            self.pending.clear();
        }
    }
}

/// Writes forwarded output to `mprun`'s stdout (0) or stderr (1).
pub(crate) fn flush(buffer: &mut Vec<u8>, stream: usize) {
    if buffer.is_empty() {
        return;
    }
    // A closed or broken terminal must not stop supervision: drop the bytes.
    let _ = if stream == 0 {
        std::io::stdout()
            .lock()
            .write_all(buffer)
            .and_then(|()| std::io::stdout().flush())
    } else {
        std::io::stderr().lock().write_all(buffer)
    };
    buffer.clear();
}

/// Takes `child`'s stdout and stderr pipes, makes them non-blocking and
/// registers them with `registry` as tokens `first_token` (stdout) and
/// `first_token + 1` (stderr). A pipe that cannot be registered is
/// dropped: the rank runs on, its output on that stream is lost.
pub(crate) fn register_output_pipes(
    registry: &mio::Registry,
    child: &mut std::process::Child,
    first_token: usize,
) -> [Option<mio::unix::pipe::Receiver>; 2] {
    use mio::unix::pipe::Receiver;
    let outputs = [
        child.stdout.take().map(Receiver::from),
        child.stderr.take().map(Receiver::from),
    ];
    let mut pipes = [None, None];
    for (stream, pipe) in outputs.into_iter().enumerate() {
        if let Some(mut pipe) = pipe {
            let token = mio::Token(first_token + stream);
            if pipe.set_nonblocking(true).is_ok()
                && registry
                    .register(&mut pipe, token, mio::Interest::READABLE)
                    .is_ok()
            {
                pipes[stream] = Some(pipe);
            }
        }
    }
    pipes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_forwarded_whole_with_their_tag() {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        buffer.push(b"hel", b"[1] ", &mut out);
        assert!(out.is_empty());
        buffer.push(b"lo\nwor", b"[1] ", &mut out);
        assert_eq!(out, b"[1] hello\n");
        buffer.push(b"ld\n\nx", b"[1] ", &mut out);
        buffer.finish(b"[1] ", &mut out);
        assert_eq!(out, b"[1] hello\n[1] world\n[1] \n[1] x\n");
    }

    #[test]
    fn endless_line_is_cut_at_the_limit() {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        buffer.push(&vec![b'a'; MAX_LINE + 10], b"", &mut out);
        assert_eq!(out.len(), MAX_LINE + 11);
        assert_eq!(out.last(), Some(&b'\n'));
    }
}
