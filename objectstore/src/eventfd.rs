//! A Linux eventfd: the doorbell another thread rings to wake an engine's
//! driver, which sleeps on it beside its device queue's descriptor.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> std::io::Result<EventFd> {
        // SAFETY: plain eventfd creation; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Makes the descriptor readable.
    pub fn signal(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one` to our eventfd. It cannot
        // fail short of a counter overflow, which reading prevents.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Makes it unreadable again; call before looking for work, so a
    /// signal that arrives afterwards is not lost.
    pub fn clear(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v` from our nonblocking eventfd.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut v as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Blocks until one of `fds` is readable or `timeout_ms` passed
/// (`-1`: no timeout).
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: a valid array of pollfd of the given length.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_wakes_and_clear_resets() {
        let e = EventFd::new().expect("eventfd");
        let t0 = std::time::Instant::now();
        wait_readable(&[e.fd()], 20);
        assert!(
            t0.elapsed().as_millis() >= 15,
            "not readable before a signal"
        );
        e.signal();
        e.signal();
        let t0 = std::time::Instant::now();
        wait_readable(&[e.fd()], 5000);
        assert!(t0.elapsed().as_millis() < 1000, "readable after a signal");
        e.clear();
        let t0 = std::time::Instant::now();
        wait_readable(&[e.fd()], 20);
        assert!(
            t0.elapsed().as_millis() >= 15,
            "one clear resets every signal"
        );
    }
}
