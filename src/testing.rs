//! Helpers shared by the unit tests of several modules.

/// A xorshift generator: the same pseudo-random numbers on every run, so a generated test
/// that fails fails again.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
