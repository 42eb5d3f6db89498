//! How large one statement may be on a backend, and splitting multi-row
//! statements to fit.

/// Rows per multi-row statement at most, whatever the limits allow: keeps
/// statements and their plans small.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// The most one statement may carry on a backend: bind parameters, and
/// bytes of parameter data. Multi-row INSERTs (enqueue, dead letters,
/// requeue) are split so that no statement exceeds either; a single row over
/// the byte budget goes in a statement of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatementLimits {
    /// Bind parameters per statement (PostgreSQL and MySQL: 65,535;
    /// SQLite: 32,766).
    pub max_params: usize,
    /// Bytes of parameter data per statement, with headroom for the
    /// protocol (MySQL/MariaDB: within `max_allowed_packet`).
    pub max_bytes: usize,
}

impl StatementLimits {
    /// Limits of `max_params` parameters and `max_bytes` bytes.
    pub const fn new(max_params: usize, max_bytes: usize) -> Self {
        Self {
            max_params,
            max_bytes,
        }
    }
}

/// Bytes a row of a multi-row statement is counted for beyond its variable
/// data: fixed-size values and per-value protocol overhead.
pub(crate) const ROW_OVERHEAD_BYTES: usize = 256;

/// Splits `rows` into consecutive runs that each fit one statement: at most
/// `max_rows` rows, `params_per_row` parameters each within the limit, and
/// the rows' `bytes` within the byte budget (a row over it alone).
pub(crate) fn statement_chunks<T>(
    rows: &[T],
    limits: StatementLimits,
    max_rows: usize,
    params_per_row: usize,
    bytes: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let max_rows = max_rows
        .min(limits.max_params / params_per_row.max(1))
        .max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, row) in rows.iter().enumerate() {
        let row_bytes = bytes(row).saturating_add(ROW_OVERHEAD_BYTES);
        if i > start && (i - start == max_rows || size + row_bytes > limits.max_bytes) {
            chunks.push(&rows[start..i]);
            start = i;
            size = 0;
        }
        size += row_bytes;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(chunks: &[&[usize]]) -> Vec<usize> {
        chunks.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn rows_are_split_by_parameters() {
        let rows = vec![0usize; 7000];
        let limits = StatementLimits::new(65_535, usize::MAX);
        let chunks = statement_chunks(&rows, limits, usize::MAX, 12, |_| 0);
        assert_eq!(lens(&chunks), vec![5461, 1539]);
        let chunks = statement_chunks(&rows, limits, 1000, 12, |_| 0);
        assert_eq!(chunks.len(), 7);
        assert!(chunks.iter().all(|c| c.len() == 1000));
    }

    #[test]
    fn rows_are_split_by_bytes_and_a_big_row_goes_alone() {
        let limits = StatementLimits::new(65_535, 10_000);
        let rows = vec![3000usize, 3000, 3000, 20_000, 100, 100];
        let chunks = statement_chunks(&rows, limits, 1000, 5, |n| *n);
        assert_eq!(lens(&chunks), vec![3, 1, 2]);
        assert!(statement_chunks(&[] as &[usize], limits, 1000, 5, |n| *n).is_empty());
    }
}
