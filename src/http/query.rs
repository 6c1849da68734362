//! The query parameters mapserve reads: `download` on a file, `sort`,
//! `order` and `format` on a listing. Pure. The query string never changes
//! which file is served; unknown parameters and unknown values are ignored
//! (a value that is not understood gives the default), so a cache-busting
//! `?v=3` or a tracking parameter changes nothing.

/// A listing's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Natural, case-insensitive name order.
    #[default]
    Name,
    /// Size (directories by name).
    Size,
    /// Modification time.
    Modified,
}

impl SortKey {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Modified => "modified",
        }
    }
}

/// A listing's sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Ascending.
    #[default]
    Asc,
    /// Descending.
    Desc,
}

impl Order {
    /// The parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    /// The other direction.
    pub fn flip(self) -> Order {
        match self {
            Order::Asc => Order::Desc,
            Order::Desc => Order::Asc,
        }
    }
}

/// What the query string asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query {
    /// `download` is present (any value, or none).
    pub download: bool,
    /// `sort=name|size|modified`.
    pub sort: SortKey,
    /// `order=asc|desc`.
    pub order: Order,
    /// `format=json` (`Some(false)` for `format=html`, `None` when absent).
    pub json: Option<bool>,
}

/// Parses a query string (without the `?`). Later parameters win.
pub fn parse(query: Option<&str>) -> Query {
    let mut q = Query::default();
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "download" => q.download = true,
            "sort" => {
                q.sort = match value {
                    "size" => SortKey::Size,
                    "modified" => SortKey::Modified,
                    _ => SortKey::Name,
                }
            }
            "order" => q.order = if value == "desc" { Order::Desc } else { Order::Asc },
            "format" => {
                q.json = match value {
                    "json" => Some(true),
                    "html" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters() {
        assert_eq!(parse(None), Query::default());
        assert!(parse(Some("download")).download);
        assert!(parse(Some("x=1&download=")).download);
        assert!(parse(Some("download=0")).download, "any value, or none");
        assert!(!parse(Some("downloads")).download);
        let q = parse(Some("sort=size&order=desc&format=json"));
        assert_eq!((q.sort, q.order, q.json), (SortKey::Size, Order::Desc, Some(true)));
        let q = parse(Some("sort=bogus&order=up&format=xml"));
        assert_eq!((q.sort, q.order, q.json), (SortKey::Name, Order::Asc, None));
        assert_eq!(parse(Some("sort=size&sort=modified")).sort, SortKey::Modified);
        assert_eq!(parse(Some("format=html")).json, Some(false));
    }
}
