//! The arrays and objects open inside a value being skipped: a bit stack, so that skipping never
//! recurses however deep the nesting.

/// The open arrays and objects of the value being skipped, one bit each (1 for an object): 64
/// levels in a register, deeper ones spilled 64 at a time.
#[derive(Default)]
pub(super) struct Nesting {
    bits: u64,
    /// Levels held in `bits`.
    held: u32,
    spilled: Vec<u64>,
    /// All the levels: `held` and 64 for each spilled word.
    pub(super) depth: usize,
}

impl Nesting {
    pub(super) fn push(&mut self, object: bool) {
        if self.held == 64 {
            self.spilled.push(self.bits);
            self.bits = 0;
            self.held = 0;
        }
        self.bits = (self.bits << 1) | u64::from(object);
        self.held += 1;
        self.depth += 1;
    }

    /// Whether the innermost open level is an object (`false` when none is open).
    pub(super) fn top(&self) -> bool {
        if self.held > 0 {
            self.bits & 1 == 1
        } else {
            self.spilled.last().is_some_and(|bits| bits & 1 == 1)
        }
    }

    pub(super) fn pop(&mut self) {
        if self.held == 0 {
            match self.spilled.pop() {
                Some(bits) => {
                    self.bits = bits;
                    self.held = 64;
                }
                None => return,
            }
        }
        self.bits >>= 1;
        self.held -= 1;
        self.depth -= 1;
    }
}
