//! Secrets drawn for one process.

use failover_cache::KeyDeriver;

/// A cache key deriver with a secret drawn for this process: for a cache no other process
/// reads (memory), or a demo run's own key space.
pub(crate) fn random_key_deriver() -> KeyDeriver {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    KeyDeriver::new(secret)
}
