//! In-memory ports for tests and offline runs: frames injected by a handle, frames sent collected by it.

use crate::{Batch, Port, PortInfo, Result};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

/// A port backed by two queues in memory.
pub struct MemPort {
    info: PortInfo,
    queues: Arc<Mutex<Queues>>,
    pending: Vec<Vec<u8>>,
    kernel_shares: bool,
}

/// The test's side of a [`MemPort`].
#[derive(Clone)]
pub struct MemHandle {
    queues: Arc<Mutex<Queues>>,
}

impl MemPort {
    /// A port named `name` with hardware address `mac`; the kernel does not share it, so the dataplane
    /// answers ARP for its own addresses itself.
    pub fn new(name: &str, mac: [u8; 6]) -> (MemPort, MemHandle) {
        let queues = Arc::new(Mutex::new(Queues::default()));
        let info = PortInfo {
            name: name.to_string(),
            ifindex: 0,
            mac,
            mtu: 1500,
            queue: 0,
        };
        (
            MemPort {
                info,
                queues: queues.clone(),
                pending: Vec::new(),
                kernel_shares: false,
            },
            MemHandle { queues },
        )
    }

    pub fn with_ifindex(mut self, ifindex: u32) -> Self {
        self.info.ifindex = ifindex;
        self
    }
}

impl MemHandle {
    /// Makes `frame` arrive on the port.
    pub fn inject(&self, frame: &[u8]) {
        self.queues.lock().unwrap().rx.push_back(frame.to_vec());
    }

    /// Takes every frame the port has transmitted (flushed) so far.
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.queues.lock().unwrap().tx)
    }
}

impl Port for MemPort {
    fn info(&self) -> &PortInfo {
        &self.info
    }

    fn recv(&mut self, batch: &mut Batch, port_index: u16) -> Result<usize> {
        let mut q = self.queues.lock().unwrap();
        let mut n = 0;
        while batch.free() > 0 {
            let Some(frame) = q.rx.pop_front() else { break };
            batch.push(&frame, port_index, false);
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, frame: &[u8]) -> Result<bool> {
        self.pending.push(frame.to_vec());
        Ok(true)
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.queues.lock().unwrap().tx.append(&mut self.pending);
        }
        Ok(())
    }

    fn kernel_shares_interface(&self) -> bool {
        self.kernel_shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_go_in_and_come_out_only_after_flush() {
        let (mut port, handle) = MemPort::new("m0", [2, 0, 0, 0, 0, 1]);
        handle.inject(&[1, 2, 3]);
        let mut batch = Batch::with_capacity(4);
        assert_eq!(port.recv(&mut batch, 3).unwrap(), 1);
        assert_eq!(batch.meta(0).port, 3);
        port.send(&[9, 9]).unwrap();
        assert!(handle.take_sent().is_empty());
        port.flush().unwrap();
        assert_eq!(handle.take_sent(), vec![vec![9, 9]]);
    }
}
