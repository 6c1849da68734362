//! Directory listings: read a directory beneath ROOT ([`read`]), sort it
//! ([`sort`]), render it as an HTML page or JSON ([`render`]). The cache
//! keeps each rendered variant as an entry (`cache::listing`), so a repeated
//! listing costs what a cached file costs.
//!
//! Each combination of format, sort key and order is its own
//! representation ([`Variant`]), with its own bytes and ETag.

pub mod read;
pub mod render;
pub mod sort;
pub mod text;

pub use sort::sort_key;

use crate::http::query::{Order, Query, SortKey};

/// File or directory, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (linked with a trailing slash).
    Dir,
    /// A regular file.
    File,
}

/// One listed entry.
#[derive(Debug, Clone)]
pub struct Item {
    /// The name, raw bytes from the file system.
    pub name: Box<[u8]>,
    /// The lowercased name, for natural ordering.
    pub sort_key: Box<str>,
    /// File or directory.
    pub kind: Kind,
    /// Size in bytes (files whose size could be read).
    pub size: Option<u64>,
    /// Modification time, seconds since the epoch, when it could be read.
    pub mtime: Option<i64>,
}

/// Which representation of a listing: format, sort key, order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// JSON (false: HTML).
    pub json: bool,
    /// Sort key.
    pub sort: SortKey,
    /// Order.
    pub order: Order,
}

impl Variant {
    /// The variant a request asks for: `?format=` wins over `Accept`.
    pub fn of(query: &Query, accept_json: bool) -> Variant {
        Variant { json: query.json.unwrap_or(accept_json), sort: query.sort, order: query.order }
    }

    /// One byte that tells the variants apart (in cache keys and ETags).
    pub fn tag(self) -> u8 {
        let sort = match self.sort {
            SortKey::Name => 0,
            SortKey::Size => 1,
            SortKey::Modified => 2,
        };
        u8::from(self.json) << 3 | sort << 1 | u8::from(self.order == Order::Desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_own_tag() {
        let mut tags = std::collections::HashSet::new();
        for json in [false, true] {
            for sort in [SortKey::Name, SortKey::Size, SortKey::Modified] {
                for order in [Order::Asc, Order::Desc] {
                    assert!(tags.insert(Variant { json, sort, order }.tag()));
                }
            }
        }
        assert_eq!(tags.len(), 12);
    }
}
