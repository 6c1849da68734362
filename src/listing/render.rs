//! A sorted listing as an HTML page (the `static/listing.html` template) or
//! as JSON. Pure: the same items and variant always give the same bytes, so
//! a listing's ETag can be a hash of them.
//!
//! Every name is HTML-escaped wherever it appears, and every href is built
//! from percent-encoded segments, so no name can become markup or a
//! different link.

use super::text::{grouped, human_size, push_escaped, push_segment, rfc3339, short_utc};
use super::{Item, Kind, Variant};
use crate::http::query::{Order, SortKey};
use crate::pages;
use std::fmt::Write;

/// Renders the listing of the directory `key` (relative to ROOT, empty for
/// ROOT): `items` in listing order, `more` left out, and the totals of the
/// whole directory.
pub fn render(key: &[u8], items: &[Item], more: usize, totals: &Totals, variant: Variant) -> Vec<u8> {
    if variant.json { json(key, items, more) } else { html(key, items, more, variant, totals) }
}

/// What the whole directory holds (the summary line).
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Directories.
    pub dirs: usize,
    /// Files.
    pub files: usize,
    /// Bytes of the files, where known.
    pub bytes: u64,
}

/// Sorts `items`, keeps the first `max` and renders them (tests, and
/// callers that have every item at hand).
pub fn render_all(key: &[u8], items: Vec<Item>, variant: Variant, max: usize) -> Vec<u8> {
    let dirs = items.iter().filter(|i| i.kind == Kind::Dir).count();
    let bytes = items.iter().filter_map(|i| i.size).fold(0u64, u64::saturating_add);
    let totals = Totals { dirs, files: items.len() - dirs, bytes };
    let mut top = super::sort::Top::new(max, variant.sort, variant.order);
    items.into_iter().for_each(|i| top.push(i));
    let (items, more) = top.finish();
    render(key, &items, more, &totals, variant)
}

/// The relative link from a directory `depth` levels below ROOT to the
/// ancestor `up` levels above it: `../` repeated (`./` for itself). Every
/// link in a listing is relative, so it stays right behind a proxy that
/// serves the tree under a prefix (`X-Forwarded-Prefix`).
fn up_href(up: usize) -> String {
    if up == 0 { "./".to_owned() } else { "../".repeat(up) }
}

fn segments(key: &[u8]) -> Vec<&[u8]> {
    key.split(|&b| b == b'/').filter(|s| !s.is_empty()).collect()
}

fn html(key: &[u8], items: &[Item], more: usize, variant: Variant, totals: &Totals) -> Vec<u8> {
    let segs = segments(key);
    let title = super::text::escaped(&format!("/{}", display_path(&segs)));
    let mut crumbs = String::new();
    if segs.is_empty() {
        crumbs.push_str("<span aria-current=\"page\">root</span>");
    } else {
        let _ = write!(crumbs, "<a href=\"{}\">root</a>", up_href(segs.len()));
    }
    for (i, s) in segs.iter().enumerate() {
        crumbs.push_str("<span class=\"sep\">/</span>");
        let name = String::from_utf8_lossy(s);
        if i + 1 == segs.len() {
            crumbs.push_str("<span aria-current=\"page\">");
            push_escaped(&mut crumbs, &name);
            crumbs.push_str("</span>");
        } else {
            let _ = write!(crumbs, "<a href=\"{}\">", up_href(segs.len() - 1 - i));
            push_escaped(&mut crumbs, &name);
            crumbs.push_str("</a>");
        }
    }
    let parent = if segs.is_empty() {
        ""
    } else {
        "<tr class=\"parent\"><td class=\"name\"><a href=\"../\"><svg class=\"icon\" aria-hidden=\"true\">\
         <use href=\"#i-up\"/></svg><span>Parent directory</span></a></td><td class=\"size\"></td>\
         <td class=\"modified\"></td><td class=\"dl\"></td></tr>\n"
    };
    let mut rows = String::with_capacity(items.len() * 640);
    for item in items {
        row(&mut rows, item);
    }
    let more = if more == 0 {
        String::new()
    } else {
        format!(
            "<p class=\"more\">{} more {} not shown: a listing shows at most {} (<code>--listing-max-entries</code>).</p>",
            grouped(more as u64),
            if more == 1 { "entry" } else { "entries" },
            grouped(items.len() as u64),
        )
    };
    let summary = format!(
        "{} {}, {} {}, {}",
        grouped(totals.dirs as u64),
        if totals.dirs == 1 { "directory" } else { "directories" },
        grouped(totals.files as u64),
        if totals.files == 1 { "file" } else { "files" },
        human_size(totals.bytes),
    );
    let values = [
        ("style", pages::STYLE),
        ("icons", pages::ICONS),
        ("script", pages::SCRIPT),
        ("title", &title),
        ("breadcrumbs", &crumbs),
        ("sort_name", &sort_link("Name", SortKey::Name, variant)),
        ("sort_size", &sort_link("Size", SortKey::Size, variant)),
        ("sort_modified", &sort_link("Modified", SortKey::Modified, variant)),
        ("parent", parent),
        ("rows", &rows),
        ("more", &more),
        ("summary", &summary),
    ];
    pages::fill(pages::LISTING, &values).into_bytes()
}

fn display_path(segs: &[&[u8]]) -> String {
    let mut path = String::new();
    for s in segs {
        path.push_str(&String::from_utf8_lossy(s));
        path.push('/');
    }
    path
}

/// A column header: a link that sorts by this column, ascending, or flips
/// the order when it already sorts by it; the active column shows an arrow.
fn sort_link(label: &str, column: SortKey, v: Variant) -> String {
    let active = v.sort == column;
    let order = if active { v.order.flip() } else { Order::Asc };
    let arrow = match (active, v.order) {
        (false, _) => "",
        (true, Order::Asc) => " <span class=\"arrow\" aria-hidden=\"true\">↑</span>",
        (true, Order::Desc) => " <span class=\"arrow\" aria-hidden=\"true\">↓</span>",
    };
    let state = match (active, v.order) {
        (false, _) => String::new(),
        (true, o) => format!(
            " aria-label=\"{label}, sorted {}\"",
            if o == Order::Asc { "ascending" } else { "descending" }
        ),
    };
    format!("<a href=\"?sort={}&amp;order={}\"{state}>{label}{arrow}</a>", column.as_str(), order.as_str())
}

fn row(out: &mut String, item: &Item) {
    let name = String::from_utf8_lossy(&item.name);
    let dir = item.kind == Kind::Dir;
    let mut href = String::with_capacity(item.name.len() * 3 + 1);
    push_segment(&mut href, &item.name);
    if dir {
        href.push('/');
    }
    // The name appears as few times as it can: rows are most of the page.
    out.push_str(if dir { "<tr class=\"dir\">" } else { "<tr class=\"file\">" });
    let _ = write!(
        out,
        "<td class=\"name\"><a href=\"{href}\"><svg class=\"icon\" aria-hidden=\"true\"><use href=\"#{}\"/></svg><span>",
        icon(&item.name, item.kind)
    );
    push_escaped(out, &name);
    if dir {
        out.push('/');
    }
    out.push_str("</span></a></td>");
    match item.size {
        Some(size) => {
            let _ =
                write!(out, "<td class=\"size\" title=\"{} bytes\">{}</td>", grouped(size), human_size(size));
        }
        None => out.push_str("<td class=\"size\"></td>"),
    }
    match item.mtime {
        Some(t) => {
            let _ = write!(
                out,
                "<td class=\"modified\"><time datetime=\"{}\">{}</time></td>",
                rfc3339(t),
                short_utc(t)
            );
        }
        None => out.push_str("<td class=\"modified\"></td>"),
    }
    if dir {
        out.push_str("<td class=\"dl\"></td></tr>\n");
    } else {
        // The same URL as the name link, with HTML's `download` attribute:
        // a browser saves it under its name, and a crawler (`wget -r`) sees
        // one URL per file, so a mirror fetches each file once. The page's
        // script turns it into the `?download` URL for people.
        let mut escaped_name = String::with_capacity(name.len());
        push_escaped(&mut escaped_name, &name);
        let _ = writeln!(
            out,
            "<td class=\"dl\"><a href=\"{href}\" download=\"{escaped_name}\" title=\"Download\" \
             aria-label=\"Download {escaped_name}\"><svg class=\"icon\" aria-hidden=\"true\"><use href=\"#i-download\"/>\
             </svg></a></td></tr>"
        );
    }
}

/// The sprite symbol for an entry, by kind and extension.
fn icon(name: &[u8], kind: Kind) -> &'static str {
    if kind == Kind::Dir {
        return "i-dir";
    }
    let ext = name.rsplit(|&b| b == b'.').next().filter(|e| e.len() < name.len()).unwrap_or_default();
    let ext = ext.to_ascii_lowercase();
    let is = |list: &[&str]| list.iter().any(|e| e.as_bytes() == ext.as_slice());
    if is(&["png", "jpg", "jpeg", "gif", "webp", "avif", "svg", "bmp", "ico", "tif", "tiff", "heic"]) {
        "i-image"
    } else if is(&["mp3", "flac", "ogg", "oga", "opus", "wav", "m4a", "aac"]) {
        "i-audio"
    } else if is(&["mp4", "mkv", "webm", "mov", "avi", "m4v", "ogv"]) {
        "i-video"
    } else if is(&["zip", "tar", "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "iso", "deb", "rpm", "br"]) {
        "i-archive"
    } else if is(&[
        "rs", "py", "js", "mjs", "ts", "c", "h", "cc", "cpp", "hpp", "go", "java", "rb", "sh", "json",
        "toml", "yaml", "yml", "xml", "html", "htm", "css", "wasm", "sql", "lua", "php",
    ]) {
        "i-code"
    } else if is(&["txt", "md", "log", "csv", "tsv", "ini", "conf", "cfg", "rst"]) {
        "i-text"
    } else if is(&["pdf", "doc", "docx", "odt", "ods", "odp", "xls", "xlsx", "ppt", "pptx", "epub", "rtf"]) {
        "i-doc"
    } else {
        "i-file"
    }
}

#[derive(serde::Serialize)]
struct JsonListing<'a> {
    path: &'a str,
    entries: Vec<JsonEntry>,
    /// Entries left out by `--listing-max-entries`.
    #[serde(skip_serializing_if = "is_zero")]
    more: usize,
}

#[derive(serde::Serialize)]
struct JsonEntry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
    modified: Option<String>,
    href: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn json(key: &[u8], items: &[Item], more: usize) -> Vec<u8> {
    let segs = segments(key);
    let path = format!("/{}", display_path(&segs));
    let entries = items
        .iter()
        .map(|item| {
            let mut href = String::with_capacity(item.name.len() * 3 + 1);
            push_segment(&mut href, &item.name);
            if item.kind == Kind::Dir {
                href.push('/');
            }
            JsonEntry {
                name: String::from_utf8_lossy(&item.name).into_owned(),
                kind: if item.kind == Kind::Dir { "dir" } else { "file" },
                size: item.size,
                modified: item.mtime.map(rfc3339),
                href,
            }
        })
        .collect();
    let mut out = serde_json::to_vec(&JsonListing { path: &path, entries, more }).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests;
