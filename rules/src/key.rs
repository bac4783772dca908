//! Small byte strings for compiled constants (compare values, masks): up to 14 bytes inline, longer ones
//! behind one pointer, so a compare op stays small and needs no allocation for the usual keys (IPv4
//! addresses, ports, protocols, marks), and one for 16-byte keys (interface names, IPv6 addresses).

use std::fmt;
use std::ops::Deref;

const INLINE: usize = 14;

/// An immutable byte string; derefs to `[u8]`. 16 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Inline {
        len: u8,
        b: [u8; INLINE],
    },
    /// exactly 16 bytes (one allocation)
    Heap16(Box<[u8; 16]>),
    /// other lengths
    Heap(Box<Box<[u8]>>),
}

impl Key {
    pub fn new(v: &[u8]) -> Key {
        if v.len() <= INLINE {
            let mut b = [0; INLINE];
            let n = v.len();
            // fixed-size (overlapping) copies instead of a call to memcpy for a few bytes
            if n >= 8 {
                b[..8].copy_from_slice(&v[..8]);
                b[n - 8..n].copy_from_slice(&v[n - 8..]);
            } else if n >= 4 {
                b[..4].copy_from_slice(&v[..4]);
                b[n - 4..n].copy_from_slice(&v[n - 4..]);
            } else if n > 0 {
                b[0] = v[0];
                b[n / 2] = v[n / 2];
                b[n - 1] = v[n - 1];
            }
            Key::Inline {
                len: v.len() as u8,
                b,
            }
        } else if let Ok(b) = <[u8; 16]>::try_from(v) {
            Key::Heap16(Box::new(b))
        } else {
            Key::Heap(Box::new(v.into()))
        }
    }
}

impl Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Key::Inline { len, b } => &b[..*len as usize],
            Key::Heap16(v) => &v[..],
            Key::Heap(v) => v,
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Key {
    /// As byte strings.
    fn cmp(&self, o: &Key) -> std::cmp::Ordering {
        (**self).cmp(&**o)
    }
}

impl From<&[u8]> for Key {
    fn from(v: &[u8]) -> Key {
        Key::new(v)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x?}", &**self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_read_back() {
        assert_eq!(std::mem::size_of::<Key>(), 16);
        for n in [0, 1, 4, 14, 15, 16, 64] {
            let v: Vec<u8> = (0..n as u8).collect();
            let k = Key::new(&v);
            assert_eq!(&*k, &v[..]);
            assert_eq!(matches!(k, Key::Inline { .. }), n <= INLINE);
            assert_eq!(matches!(k, Key::Heap16(_)), n == 16);
            assert_eq!(k.clone(), k);
        }
        assert_ne!(Key::new(&[1, 2]), Key::new(&[1, 2, 0]));
    }

    /// Every inline length keeps its bytes and zeros past them (derived equality and hash see those).
    #[test]
    fn inline_copies_every_length() {
        for n in 0..=INLINE {
            let v: Vec<u8> = (1..=n as u8).map(|x| x.wrapping_mul(37) | 1).collect();
            let mut want = [0u8; INLINE];
            want[..n].copy_from_slice(&v);
            assert_eq!(
                Key::new(&v),
                Key::Inline {
                    len: n as u8,
                    b: want
                },
                "{n}"
            );
        }
    }
}
