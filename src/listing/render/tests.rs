//! Rendering tests: escaping, links, caps, JSON shape.

use super::*;
use crate::listing::sort_key;

fn item(name: &[u8], kind: Kind, size: Option<u64>) -> Item {
    Item { name: name.into(), sort_key: sort_key(name), kind, size, mtime: Some(1_798_502_523) }
}

fn page(key: &[u8], items: Vec<Item>, v: Variant, max: usize) -> String {
    String::from_utf8(render_all(key, items, v, max)).unwrap()
}

const HTML: Variant = Variant { json: false, sort: SortKey::Name, order: Order::Asc };

#[test]
fn names_are_text_and_links_are_encoded() {
    let items = vec![
        item(b"<img src=x onerror=alert(1)>.txt", Kind::File, Some(3)),
        item("a b#c?d%e\"f'g ä".as_bytes(), Kind::Dir, None),
        item(b"\xffbad", Kind::File, Some(1)),
    ];
    let html = page(b"top/d&r", items, HTML, 100);
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("<span>&lt;img src=x onerror=alert(1)&gt;.txt</span>"));
    assert!(html.contains("href=\"%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt\""));
    assert!(html.contains("href=\"%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.txt\" download=\"&lt;img src=x onerror=alert(1)&gt;.txt\""));
    assert!(html.contains("href=\"a%20b%23c%3Fd%25e%22f%27g%20%C3%A4/\""));
    assert!(html.contains("<span>a b#c?d%e&quot;f&#39;g ä/</span>"));
    assert!(html.contains("href=\"%FFbad\""), "raw bytes survive in the link");
    assert!(html.contains("<title>Index of /top/d&amp;r/</title>"));
    assert!(html.contains("<a href=\"../\">top</a>"), "breadcrumbs link each ancestor, relatively");
    assert!(html.contains("<a href=\"../../\">root</a>"), "and ROOT");
    assert!(html.contains("<span aria-current=\"page\">d&amp;r</span>"));
    assert!(html.contains("href=\"../\""), "a parent link");
    assert!(!html.contains("{{"));
    // Directories first.
    let dir_at = html.find("a%20b").unwrap();
    assert!(dir_at < html.find("%3Cimg").unwrap() && dir_at < html.find("%FFbad").unwrap());
}

#[test]
fn rows_carry_sizes_times_and_downloads() {
    let html = page(b"", vec![item(b"big.iso", Kind::File, Some(1_258_291))], HTML, 100);
    assert!(html.contains("title=\"1,258,291 bytes\">1.2 MiB</td>"));
    assert!(html.contains("<time datetime=\"2026-12-29T00:02:03Z\">2026-12-29 00:02 UTC</time>"));
    assert!(html.contains("<use href=\"#i-archive\"/>"));
    assert!(!html.contains("href=\"../\""), "no parent at the top");
    assert!(html.contains("<span aria-current=\"page\">root</span>"));
    assert!(html.contains("0 directories, 1 file, 1.2 MiB"));
}

#[test]
fn sort_links_flip_the_active_column() {
    let v = Variant { json: false, sort: SortKey::Size, order: Order::Asc };
    let html = page(b"", vec![], v, 100);
    assert!(html.contains("href=\"?sort=size&amp;order=desc\""));
    assert!(html.contains("href=\"?sort=name&amp;order=asc\""));
    assert!(html.contains("href=\"?sort=modified&amp;order=asc\""));
}

#[test]
fn the_cap_shows_how_many_more() {
    let items: Vec<Item> = (0..25).map(|i| item(format!("f{i}").as_bytes(), Kind::File, Some(i))).collect();
    let html = page(b"", items.clone(), HTML, 10);
    assert_eq!(html.matches("<tr class=\"file\"").count(), 10);
    assert!(html.contains("15 more entries not shown"));
    assert!(html.contains("f9<") && !html.contains("f10<"), "natural order before the cap");
    let v = Variant { json: true, ..HTML };
    let json: serde_json::Value = serde_json::from_slice(&render_all(b"", items, v, 10)).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 10);
    assert_eq!(json["more"], 15);
}

#[test]
fn json_shape() {
    let v = Variant { json: true, sort: SortKey::Size, order: Order::Desc };
    let items = vec![
        item(b"small", Kind::File, Some(1)),
        item("grand é".as_bytes(), Kind::File, Some(9)),
        item(b"sub", Kind::Dir, None),
    ];
    let json: serde_json::Value = serde_json::from_slice(&render_all(b"d", items, v, 100)).unwrap();
    assert_eq!(json["path"], "/d/");
    assert!(json.get("more").is_none());
    let e = &json["entries"];
    assert_eq!(e[0]["name"], "sub");
    assert_eq!(e[0]["type"], "dir");
    assert_eq!(e[0]["href"], "sub/");
    assert_eq!(e[1]["name"], "grand é");
    assert_eq!(e[1]["href"], "grand%20%C3%A9");
    assert_eq!(e[1]["size"], 9);
    assert_eq!(e[1]["modified"], "2026-12-29T00:02:03Z");
    assert_eq!(e[2]["name"], "small");
}
