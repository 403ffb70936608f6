//! STAND-IN for the `config` module (branch `large` writes the real one,
//! reading `HAKMEM_*` variables once without allocating). Defaults only.

/// The allocator's tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `HAKMEM_STATS`.
    pub stats: bool,
    /// `HAKMEM_ARENA_CACHE`.
    pub arena_cache: usize,
    /// `HAKMEM_PURGE_DELAY_MS`.
    pub purge_delay_ms: u64,
}

static DEFAULT: Config = Config {
    stats: false,
    arena_cache: 4,
    purge_delay_ms: 100,
};

/// The process configuration.
pub fn get() -> &'static Config {
    &DEFAULT
}
