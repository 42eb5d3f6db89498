//! Choosing a partition: by index, or by a key hashed with a stable hash.

use uuid::Uuid;

/// Which partition of a queue a message goes to: an explicit index, or a key
/// hashed to one.
///
/// - [`PartitionKey::index(3)`](PartitionKey::index) is partition 3 (of
///   `0..partitions`; a larger index is refused with
///   [`OutboxError::PartitionOutOfRange`](crate::OutboxError::PartitionOutOfRange)).
/// - A key converts with `From`: `&str`, `String`, `&String`, `u64`, `i64`
///   and [`Uuid`]. Integers and UUIDs are keys, not indexes: each is hashed
///   through its text form (decimal for integers, lowercase hyphenated for
///   UUIDs), so `42_u64`, `42_i64` and `"42"` go to the same partition, and
///   a UUID to the same partition as its `to_string()`.
///
/// A key is hashed with 64-bit FNV-1a over the UTF-8 bytes of its text and
/// taken modulo the queue's partition count. The hash is part of the public
/// contract: it is the same on every backend and will not change between
/// versions (a unit test pins it), so a key keeps its partition, and its
/// order, across deploys as long as the partition count is unchanged; a
/// producer in another language gets the same partition by hashing the same
/// text.
///
/// ```
/// use outbox_core::PartitionKey;
///
/// assert_eq!(PartitionKey::index(3).resolve(8), 3);
/// assert_eq!(PartitionKey::from("customer-1").resolve(8), 7);
/// assert_eq!(PartitionKey::from(42_u64), PartitionKey::from("42"));
/// ```
///
/// `From<u32>` is kept for compatibility and means an index, as it did
/// before keys of other integer types existed; prefer
/// [`PartitionKey::index`], which says so. An integer literal without a
/// type (`enqueue(&txn, "q", 3, message)`) does not compile: write
/// `PartitionKey::index(3)` for a partition, or type the key (`3_u64`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// An explicit partition index, `0..partitions`.
    Number(u32),
    /// A key (customer id, aggregate id) hashed to a partition.
    Key(String),
}

impl PartitionKey {
    /// Partition `index` (of `0..partitions`), taken as is rather than hashed.
    pub fn index(index: u32) -> Self {
        Self::Number(index)
    }

    /// The partition for a queue with `partitions` partitions. An index is
    /// returned as is (enqueue checks the range).
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

/// An index, as [`PartitionKey::index`]: kept for compatibility, prefer
/// `PartitionKey::index`. (Rust cannot mark a trait impl deprecated.)
impl From<u32> for PartitionKey {
    fn from(index: u32) -> Self {
        Self::Number(index)
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

impl From<&String> for PartitionKey {
    fn from(key: &String) -> Self {
        Self::Key(key.clone())
    }
}

/// A key hashed through its decimal text: `42_u64` goes where `"42"` goes.
impl From<u64> for PartitionKey {
    fn from(key: u64) -> Self {
        Self::Key(key.to_string())
    }
}

/// A key hashed through its decimal text: `-7_i64` goes where `"-7"` goes.
impl From<i64> for PartitionKey {
    fn from(key: i64) -> Self {
        Self::Key(key.to_string())
    }
}

/// A key hashed through its lowercase hyphenated text (`Uuid::to_string`).
impl From<Uuid> for PartitionKey {
    fn from(key: Uuid) -> Self {
        Self::Key(key.hyphenated().to_string())
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

    /// Golden values: a key's partition is a public contract. If this test
    /// fails, the hash or a key's text form changed, and every deployed
    /// key would move to another partition: do not update the numbers.
    #[test]
    fn keys_map_to_pinned_partitions() {
        let uuid = Uuid::from_u128(0x0192_f0c1_5a6b_7c8d_9e0f_a1b2_c3d4_e5f6);
        let pinned: [(PartitionKey, u32, u32); 9] = [
            (PartitionKey::from(""), 5, 805),
            (PartitionKey::from("customer-1"), 7, 343),
            (PartitionKey::from("alice".to_owned()), 7, 263),
            (PartitionKey::from(&"42".to_owned()), 3, 547),
            (PartitionKey::from(42_u64), 3, 547),
            (PartitionKey::from(-7_i64), 13, 861),
            (PartitionKey::from(u64::MAX), 4, 84),
            (PartitionKey::from(i64::MIN), 9, 889),
            (PartitionKey::from(uuid), 9, 681),
        ];
        for (key, of_16, of_1024) in pinned {
            assert_eq!(
                (key.resolve(16), key.resolve(1024)),
                (of_16, of_1024),
                "{key:?}"
            );
        }
        assert_eq!(
            PartitionKey::from(uuid),
            PartitionKey::from("0192f0c1-5a6b-7c8d-9e0f-a1b2c3d4e5f6")
        );
        assert_eq!(PartitionKey::from("alice").resolve(1), 0);
        assert_eq!(PartitionKey::from("alice").resolve(0), 0);
    }

    #[test]
    fn an_index_is_taken_as_is() {
        assert_eq!(PartitionKey::index(5).resolve(8), 5);
        assert_eq!(PartitionKey::from(5_u32), PartitionKey::index(5));
        // Out of range is for enqueue to refuse, not for resolve to wrap.
        assert_eq!(PartitionKey::index(9).resolve(8), 9);
    }
}
