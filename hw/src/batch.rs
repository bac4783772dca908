//! A batch of frames: one preallocated buffer, no allocation on the fast path.

/// The largest frame a batch slot holds (an Ethernet frame of MTU 1500 plus VLAN tags, with room to spare).
pub const FRAME_CAPACITY: usize = 2048;

/// Per-frame metadata carried beside the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Length of the frame in bytes.
    pub len: u16,
    /// Index of the port (in the worker's port list) the frame arrived on.
    pub port: u16,
    /// True when the kernel stack received this same frame too (AF_PACKET, the ARP tap of an AF_XDP port):
    /// the dataplane must not answer or deliver it locally a second time.
    pub kernel_has_copy: bool,
}

/// A fixed-capacity batch of frames, reused from one poll to the next.
pub struct Batch {
    buf: Vec<u8>,
    meta: Vec<FrameMeta>,
    capacity: usize,
}

impl Batch {
    pub fn with_capacity(capacity: usize) -> Self {
        Batch {
            buf: vec![0; capacity * FRAME_CAPACITY],
            meta: Vec::with_capacity(capacity),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots still free in this batch.
    pub fn free(&self) -> usize {
        self.capacity - self.meta.len()
    }

    pub fn clear(&mut self) {
        self.meta.clear();
    }

    /// Copies `frame` into the next slot. Frames longer than [`FRAME_CAPACITY`] are truncated to it and
    /// will fail to parse, which the dataplane counts; returns false when the batch is full.
    pub fn push(&mut self, frame: &[u8], port: u16, kernel_has_copy: bool) -> bool {
        let len = frame.len().min(FRAME_CAPACITY);
        self.push_with(port, kernel_has_copy, |slot| {
            slot[..len].copy_from_slice(&frame[..len]);
            len
        })
    }

    /// Lets `fill` write the next frame straight into its slot and return its length (avoids a copy for
    /// ports that receive into a buffer). Returns false when the batch is full.
    pub fn push_with(
        &mut self,
        port: u16,
        kernel_has_copy: bool,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        let i = self.meta.len();
        if i == self.capacity {
            return false;
        }
        let slot = &mut self.buf[i * FRAME_CAPACITY..(i + 1) * FRAME_CAPACITY];
        let len = fill(slot).min(FRAME_CAPACITY);
        self.meta.push(FrameMeta {
            len: len as u16,
            port,
            kernel_has_copy,
        });
        true
    }

    pub fn meta(&self, i: usize) -> FrameMeta {
        self.meta[i]
    }

    pub fn frame(&self, i: usize) -> &[u8] {
        let m = self.meta[i];
        &self.buf[i * FRAME_CAPACITY..i * FRAME_CAPACITY + m.len as usize]
    }

    /// The whole slot of frame `i` (its bytes are the first `meta(i).len`), for in-place edits that may
    /// change the length; call [`Batch::set_len`] afterwards.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * FRAME_CAPACITY..(i + 1) * FRAME_CAPACITY]
    }

    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.meta[i].len as usize;
        &mut self.buf[i * FRAME_CAPACITY..i * FRAME_CAPACITY + len]
    }

    pub fn set_len(&mut self, i: usize, len: usize) {
        self.meta[i].len = len.min(FRAME_CAPACITY) as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_until_full_then_refuse() {
        let mut b = Batch::with_capacity(2);
        assert!(b.push(&[1, 2, 3], 0, false));
        assert!(b.push(&[4; 10], 1, true));
        assert!(!b.push(&[5], 0, false));
        assert_eq!(b.frame(0), &[1, 2, 3]);
        assert_eq!(
            b.meta(1),
            FrameMeta {
                len: 10,
                port: 1,
                kernel_has_copy: true
            }
        );
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn oversized_frame_is_truncated_not_panicking() {
        let mut b = Batch::with_capacity(1);
        assert!(b.push(&vec![7u8; FRAME_CAPACITY + 100], 0, false));
        assert_eq!(b.frame(0).len(), FRAME_CAPACITY);
    }
}
