//! Short text built on the stack, for values made on every request (an
//! address, a Server-Timing value): a `String` would be an allocation
//! each time, and `format!` goes through the formatting machinery.

/// At most `N` bytes of text, on the stack.
pub struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self { bytes: [0; N], len: 0 }
    }
}

impl<const N: usize> StackText<N> {
    /// Appends `piece` whole, or nothing when it does not fit (callers size
    /// `N` for their longest text).
    pub fn push(&mut self, piece: &[u8]) -> bool {
        let end = self.len + piece.len();
        match self.bytes.get_mut(self.len..end) {
            Some(room) => {
                room.copy_from_slice(piece);
                self.len = end;
                true
            }
            None => false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> std::fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes()).then_some(()).ok_or(std::fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::StackText;
    use std::fmt::Write as _;

    #[test]
    fn pieces_that_fit_are_kept_and_one_that_does_not_is_left_out_whole() {
        let mut text = StackText::<8>::default();
        assert!(text.push(b"abc"));
        assert!(write!(text, "{}", 42).is_ok());
        assert!(!text.push(b"xyzw"), "5 + 4 > 8");
        assert_eq!(text.as_bytes(), b"abc42");
        assert!(text.push(b"xyz"));
        assert_eq!(text.as_bytes(), b"abc42xyz");
    }
}
