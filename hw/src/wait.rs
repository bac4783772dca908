//! Sleeping until a port has frames, for workers that stop busy-polling when idle.

/// Waits until one of `fds` is readable or `timeout_ms` passes. Errors (EINTR included) count as a wake-up:
/// the caller polls its ports next anyway.
pub fn wait_readable(fds: &[i32], timeout_ms: i32) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    if pfds.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(timeout_ms.max(0) as u64));
        return;
    }
    // SAFETY: pfds is a valid, exclusively borrowed array of pollfd for the duration of the call.
    unsafe {
        libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms);
    }
}
