//! Diagnostics that never allocate: fatal errors and the statistics report
//! are formatted into a fixed buffer on the stack and written with one
//! `write(2)`.
//!
//! The allocator cannot use `eprintln!`: it may allocate, and it takes the
//! stderr lock, which may be held by the very code that called the allocator.

use core::fmt::{self, Write};

/// A fixed-size buffer that implements `fmt::Write`; output past its capacity
/// is cut (and marked with `...`), never an error.
pub struct StackWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> StackWriter<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            truncated: false,
        }
    }

    /// What has been written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the buffer to file descriptor `fd` (2 = stderr) and empties it.
    pub fn flush_to(&mut self, fd: i32) {
        if self.truncated && self.len + 4 <= N {
            self.buf[self.len..self.len + 4].copy_from_slice(b"...\n");
            self.len += 4;
        }
        write_all(fd, &self.buf[..self.len]);
        self.len = 0;
        self.truncated = false;
    }
}

impl<const N: usize> Default for StackWriter<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StackWriter<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep 4 bytes for the truncation mark.
        let room = N.saturating_sub(4).saturating_sub(self.len);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// Writes all of `bytes` to `fd`, retrying on short writes and EINTR;
/// gives up silently on any other error (there is nowhere to report it).
pub fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && errno() == libc::EINTR {
            continue;
        } else {
            return;
        }
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Prints `hakmem: <message>` on stderr and aborts the process. Used for
/// invalid and double frees: continuing would corrupt the heap.
#[cold]
#[inline(never)]
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    let mut w = StackWriter::<512>::new();
    let _ = w.write_str("hakmem: ");
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    w.flush_to(2);
    std::process::abort()
}

/// `fatal!(...)`: formats like `format_args!` and calls [`fatal`].
#[macro_export]
#[doc(hidden)]
macro_rules! fatal {
    ($($arg:tt)*) => {
        $crate::diag::fatal(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_writer_formats_and_truncates() {
        let mut w = StackWriter::<16>::new();
        write!(w, "{:#x}", 0xdead_usize).unwrap();
        assert_eq!(w.as_bytes(), b"0xdead");
        write!(w, " and a long tail").unwrap();
        assert_eq!(w.as_bytes().len(), 12);
        assert!(w.truncated);
    }
}
