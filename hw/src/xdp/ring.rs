//! The four AF_XDP rings, mapped from the socket. Single producer / single consumer each: one side is the
//! kernel, the other this process. The producer publishes with a release store after writing descriptors;
//! the consumer reads the producer index with an acquire load before reading them (and the mirror image for
//! the consumer index).

use crate::{HwError, Result};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) struct Ring<T: Copy> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Our view of our own index (producer for fill/TX, consumer for RX/completion).
    local: u32,
    /// Last seen value of the other side's index.
    cached_other: u32,
    map: *mut libc::c_void,
    map_len: usize,
}

// SAFETY: the ring memory belongs to the socket, not to a thread; a Ring is owned by exactly one port.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps a ring of `size` entries at page offset `pgoff` of socket `fd`, laid out per `off`.
    pub(crate) fn map(
        fd: RawFd,
        size: u32,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
        what: &str,
    ) -> Result<Self> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: mapping the socket's ring; the kernel validates offset and length.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(HwError::last_os(format!("mmap {what} ring")));
        }
        let base = map as *mut u8;
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS and lie inside the mapping.
        let ring = unsafe {
            Ring {
                producer: base.add(off.producer as usize) as *const AtomicU32,
                consumer: base.add(off.consumer as usize) as *const AtomicU32,
                flags: base.add(off.flags as usize) as *const AtomicU32,
                descs: base.add(off.desc as usize) as *mut T,
                mask: size - 1,
                size,
                local: 0,
                cached_other: 0,
                map,
                map_len,
            }
        };
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping.
        unsafe { &*self.consumer }
    }

    /// True when the kernel asks to be woken up (XDP_RING_NEED_WAKEUP) for this ring.
    pub(crate) fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the live mapping.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, TX) ----

    /// Free slots for us to produce into.
    pub(crate) fn prod_free(&mut self) -> u32 {
        let free = self.size - self.local.wrapping_sub(self.cached_other);
        if free > 0 {
            return free;
        }
        self.cached_other = self.consumer().load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(self.cached_other)
    }

    /// Writes one entry; the caller checked `prod_free() > 0`. Visible to the kernel after `prod_submit`.
    pub(crate) fn prod_write(&mut self, v: T) {
        // SAFETY: index masked into the ring; the slot is ours until submitted.
        unsafe { self.descs.add((self.local & self.mask) as usize).write(v) };
        self.local = self.local.wrapping_add(1);
    }

    pub(crate) fn prod_submit(&self) {
        self.producer().store(self.local, Ordering::Release);
    }

    /// Entries produced but not yet consumed by the kernel.
    pub(crate) fn prod_pending(&mut self) -> u32 {
        self.cached_other = self.consumer().load(Ordering::Acquire);
        self.local.wrapping_sub(self.cached_other)
    }

    // ---- consumer side (RX, completion) ----

    /// Entries ready for us to consume (up to `max`).
    pub(crate) fn cons_ready(&mut self, max: u32) -> u32 {
        let mut n = self.cached_other.wrapping_sub(self.local);
        if n == 0 {
            self.cached_other = self.producer().load(Ordering::Acquire);
            n = self.cached_other.wrapping_sub(self.local);
        }
        n.min(max)
    }

    /// Reads the `i`-th ready entry (i < `cons_ready`).
    pub(crate) fn cons_read(&self, i: u32) -> T {
        // SAFETY: i is below the published producer index; the slot holds a kernel-written entry.
        unsafe {
            self.descs
                .add((self.local.wrapping_add(i) & self.mask) as usize)
                .read()
        }
    }

    /// Gives `n` consumed entries back to the kernel.
    pub(crate) fn cons_release(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.consumer().store(self.local, Ordering::Release);
    }
}

impl<T: Copy> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}
