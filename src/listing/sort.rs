//! Listing order, decided on the server so that it works without
//! JavaScript. Pure.
//!
//! * Directories come first in every order.
//! * Names compare naturally and case-insensitively: runs of digits compare
//!   by value (`file2` before `file10`), everything else by lowercased
//!   character; equal keys fall back to the raw bytes, so the order is total
//!   and the same on every request.
//! * Size and time orders break ties by name; entries whose size or time is
//!   unknown sort as smallest/oldest.

use super::{Item, Kind};
use crate::http::query::{Order, SortKey};
use std::cmp::Ordering;

/// Sorts `items` in place.
pub fn sort(items: &mut [Item], key: SortKey, order: Order) {
    items.sort_by(|a, b| compare(a, b, key, order));
}

/// The listing order of two items.
pub fn compare(a: &Item, b: &Item, key: SortKey, order: Order) -> Ordering {
    let dirs_first = (a.kind != Kind::Dir).cmp(&(b.kind != Kind::Dir));
    let by = match key {
        SortKey::Name => Ordering::Equal,
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Modified => a.mtime.cmp(&b.mtime),
    };
    let by = by.then_with(|| natural(&a.sort_key, &b.sort_key)).then_with(|| a.name.cmp(&b.name));
    dirs_first.then(if order == Order::Desc { by.reverse() } else { by })
}

/// The first `max` items of a directory in listing order, kept while it is
/// read: at most `2 * max` items are held at any time, however large the
/// directory, and the rest are only counted.
#[derive(Debug)]
pub struct Top {
    items: Vec<Item>,
    max: usize,
    key: SortKey,
    order: Order,
    seen: usize,
}

impl Top {
    /// An empty selection of the first `max` (at least 1) in this order.
    pub fn new(max: usize, key: SortKey, order: Order) -> Top {
        let max = max.max(1);
        Top { items: Vec::with_capacity(max.min(4096)), max, key, order, seen: 0 }
    }

    /// Offers one item.
    pub fn push(&mut self, item: Item) {
        self.seen += 1;
        self.items.push(item);
        if self.items.len() >= 2 * self.max {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let (key, order) = (self.key, self.order);
        if self.items.len() > self.max {
            self.items.select_nth_unstable_by(self.max, |a, b| compare(a, b, key, order));
            self.items.truncate(self.max);
        }
    }

    /// The kept items, sorted, and how many were left out.
    pub fn finish(mut self) -> (Vec<Item>, usize) {
        self.trim();
        sort(&mut self.items, self.key, self.order);
        let more = self.seen - self.items.len();
        (self.items, more)
    }
}

/// The lowercased name that [`natural`] compares.
pub fn sort_key(name: &[u8]) -> Box<str> {
    String::from_utf8_lossy(name).to_lowercase().into_boxed_str()
}

/// Natural order of two (lowercased) names.
pub fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_digits(a);
                let (db, rb) = split_digits(b);
                let (va, vb) = (trim_zeros(da), trim_zeros(db));
                let by_value = va.len().cmp(&vb.len()).then_with(|| va.cmp(vb));
                // Equal values: fewer leading zeros first (`1` before `01`).
                match by_value.then_with(|| da.len().cmp(&db.len())) {
                    Ordering::Equal => (a, b) = (ra, rb),
                    other => return other,
                }
            }
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Equal => (a, b) = (&a[1..], &b[1..]),
                other => return other,
            },
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at(n)
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&b| b == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(name: &str, kind: Kind, size: Option<u64>, mtime: Option<i64>) -> Item {
        Item { name: name.as_bytes().into(), sort_key: sort_key(name.as_bytes()), kind, size, mtime }
    }

    fn names(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| std::str::from_utf8(&i.name).unwrap()).collect()
    }

    #[test]
    fn natural_case_insensitive_directories_first() {
        let mut items = vec![
            item("file10.txt", Kind::File, Some(1), Some(5)),
            item("File2.txt", Kind::File, Some(300), Some(1)),
            item("b", Kind::Dir, None, Some(9)),
            item("file1.txt", Kind::File, Some(20), Some(3)),
            item("A", Kind::Dir, None, Some(2)),
            item("file01.txt", Kind::File, Some(20), Some(4)),
            item("Ärger", Kind::File, None, None),
        ];
        sort(&mut items, SortKey::Name, Order::Asc);
        assert_eq!(names(&items), ["A", "b", "file1.txt", "file01.txt", "File2.txt", "file10.txt", "Ärger"]);
        sort(&mut items, SortKey::Name, Order::Desc);
        assert_eq!(names(&items), ["b", "A", "Ärger", "file10.txt", "File2.txt", "file01.txt", "file1.txt"]);
        sort(&mut items, SortKey::Size, Order::Asc);
        assert_eq!(names(&items), ["A", "b", "Ärger", "file10.txt", "file1.txt", "file01.txt", "File2.txt"]);
        sort(&mut items, SortKey::Size, Order::Desc);
        assert_eq!(names(&items), ["b", "A", "File2.txt", "file01.txt", "file1.txt", "file10.txt", "Ärger"]);
        sort(&mut items, SortKey::Modified, Order::Asc);
        assert_eq!(names(&items), ["A", "b", "Ärger", "File2.txt", "file1.txt", "file01.txt", "file10.txt"]);
    }

    #[test]
    fn big_numbers_compare_by_value() {
        assert_eq!(natural("v99999999999999999999999", "v100000000000000000000000"), Ordering::Less);
        assert_eq!(natural("a2b10", "a2b9"), Ordering::Greater);
        assert_eq!(natural("x", "x1"), Ordering::Less);
    }

    proptest! {
        /// The bounded selection gives exactly the head of the full sort.
        #[test]
        fn top_is_the_head_of_the_full_sort(
            sizes in proptest::collection::vec((0u64..50, any::<bool>()), 0..300),
            max in 1usize..40,
            by_size: bool,
            desc: bool,
        ) {
            let key = if by_size { SortKey::Size } else { SortKey::Name };
            let order = if desc { Order::Desc } else { Order::Asc };
            let items: Vec<Item> = sizes
                .iter()
                .enumerate()
                // Names are unique in a directory.
                .map(|(i, &(s, dir))| item(&format!("n{i}"), if dir { Kind::Dir } else { Kind::File }, Some(s), None))
                .collect();
            let mut all = items.clone();
            sort(&mut all, key, order);
            let mut top = Top::new(max, key, order);
            for i in items {
                top.push(i);
            }
            let (kept, more) = top.finish();
            prop_assert_eq!(kept.len(), all.len().min(max));
            prop_assert_eq!(more, all.len() - kept.len());
            let names = |v: &[Item]| v.iter().map(|i| (i.name.clone(), i.size, i.kind)).collect::<Vec<_>>();
            prop_assert_eq!(names(&kept), names(&all[..kept.len()]));
        }

        #[test]
        fn natural_is_a_total_order(a in "[a-c0-2]{0,6}", b in "[a-c0-2]{0,6}", c in "[a-c0-2]{0,6}") {
            prop_assert_eq!(natural(&a, &b), natural(&b, &a).reverse());
            if natural(&a, &b) != Ordering::Greater && natural(&b, &c) != Ordering::Greater {
                prop_assert_ne!(natural(&a, &c), Ordering::Greater);
            }
            prop_assert_eq!(natural(&a, &b) == Ordering::Equal, a == b);
        }
    }
}
