//! Choosing a partition: by number, or by a key hashed with a stable hash.

/// Which partition of a queue a message goes to.
///
/// A [`PartitionKey::Key`] is hashed with 64-bit FNV-1a over its UTF-8 bytes
/// and taken modulo the queue's partition count. The hash is part of the
/// public contract: it will not change between versions, so a key keeps its
/// partition (and its order) across deploys as long as the partition count
/// is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// An explicit partition number, `0..partitions`.
    Number(u32),
    /// A key (customer id, aggregate id) hashed to a partition.
    Key(String),
}

impl PartitionKey {
    /// The partition number for a queue with `partitions` partitions.
    /// A [`PartitionKey::Number`] is returned as is (the caller checks the range).
    pub fn resolve(&self, partitions: u32) -> u32 {
        match self {
            Self::Number(n) => *n,
            Self::Key(key) => {
                let count = u64::from(partitions.max(1));
                // The remainder is below `partitions`, so it fits in u32.
                u32::try_from(fnv1a_64(key.as_bytes()) % count).unwrap_or(0)
            }
        }
    }
}

impl From<u32> for PartitionKey {
    fn from(n: u32) -> Self {
        Self::Number(n)
    }
}

impl From<&str> for PartitionKey {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<String> for PartitionKey {
    fn from(key: String) -> Self {
        Self::Key(key)
    }
}

/// 64-bit FNV-1a: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_map_to_stable_partitions() {
        assert_eq!(
            PartitionKey::from("customer-1").resolve(8),
            (fnv1a_64(b"customer-1") % 8) as u32
        );
        assert_eq!(
            PartitionKey::from("a").resolve(16),
            0xaf63_dc4c_8601_ec8c_u64 as u32 % 16
        );
        assert_eq!(PartitionKey::from(5).resolve(8), 5);
    }
}
