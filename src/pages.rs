//! The page assets in `static/`, compiled into the binary (`include_str!`),
//! and the filling of their `{{name}}` markers. The stylesheet, the script
//! and the icon sprite are inlined into every page, so no asset has a URL of
//! its own that a file under ROOT could collide with. Also the HTML error
//! pages, rendered once per status.

use bytes::Bytes;
use std::sync::OnceLock;

/// The listing page.
pub const LISTING: &str = include_str!("../static/listing.html");
/// The error page.
pub const ERROR: &str = include_str!("../static/error.html");
/// The stylesheet both pages inline.
pub const STYLE: &str = include_str!("../static/style.css");
/// The listing's script (progressive enhancement: filter box, local times).
pub const SCRIPT: &str = include_str!("../static/listing.js");
/// The icon sprite both pages inline.
pub const ICONS: &str = include_str!("../static/icons.svg");
/// The admin listener's cache dashboard (inline CSS and script).
pub const DASHBOARD: &str = include_str!("../static/dashboard.html");

/// `Content-Security-Policy` of a listing page: nothing may load, and the
/// only script that may run is the page's own (by its hash), so even a name
/// that escaped escaping could not run code. Styles stay inline (the
/// stylesheet, and the sprite's `style` attribute). A unit test checks the
/// hash against `static/listing.js` as the template wraps it.
pub const LISTING_CSP: &str = "default-src 'none'; script-src 'sha256-OhvT/ioplDyzytEMQPQhpiG32WxayuvTsLXRi85xDjo='; \
                               style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// `Content-Security-Policy` of an error page: no script at all.
pub const ERROR_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// `template` with every `{{name}}` replaced by the value paired with
/// `name` (values are HTML already); an unknown name becomes empty.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let extra: usize = values.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len() + extra);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        if let Some((_, value)) = values.iter().find(|(n, _)| *n == name) {
            out.push_str(value);
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// The statuses that have an HTML page, with its title and message.
const ERRORS: [(u16, &str, &str); 7] = [
    (400, "Bad Request", "The request could not be understood."),
    (403, "Forbidden", "You do not have permission to open this page."),
    (404, "Not Found", "There is nothing at this address."),
    (405, "Method Not Allowed", "This server answers only GET and HEAD requests."),
    (416, "Range Not Satisfiable", "The requested part lies beyond the end of the file."),
    (500, "Internal Server Error", "Something went wrong on the server while answering."),
    (503, "Service Unavailable", "The server is busy right now. Please try again in a moment."),
];

/// The HTML page for `status`, if it has one. Rendered on first use.
pub fn error_page(status: u16) -> Option<Bytes> {
    static PAGES: [OnceLock<Bytes>; ERRORS.len()] = [const { OnceLock::new() }; ERRORS.len()];
    let at = ERRORS.iter().position(|(s, _, _)| *s == status)?;
    let (_, title, message) = ERRORS[at];
    let page = PAGES[at].get_or_init(|| {
        let status = status.to_string();
        let values =
            [("style", STYLE), ("icons", ICONS), ("status", &status), ("title", title), ("message", message)];
        Bytes::from(fill(ERROR, &values))
    });
    Some(page.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_known_names_and_drops_unknown_ones() {
        assert_eq!(fill("a{{x}}b{{y}}c{{", &[("x", "1")]), "a1bc{{");
        assert_eq!(fill("{{x}}{{x}}", &[("x", "<i>")]), "<i><i>");
        assert_eq!(fill("no markers", &[]), "no markers");
    }

    #[test]
    fn templates_use_only_the_names_the_code_fills() {
        let names = |t: &str| -> Vec<String> {
            t.split("{{").skip(1).filter_map(|s| s.split_once("}}")).map(|(n, _)| n.to_owned()).collect()
        };
        let listing = [
            "style",
            "icons",
            "script",
            "title",
            "breadcrumbs",
            "sort_name",
            "sort_size",
            "sort_modified",
            "parent",
            "rows",
            "more",
            "summary",
        ];
        for n in names(LISTING) {
            assert!(listing.contains(&n.as_str()), "listing.html: unknown {{{{{n}}}}}");
        }
        for n in names(ERROR) {
            assert!(
                ["style", "icons", "status", "title", "message"].contains(&n.as_str()),
                "error.html: {n}"
            );
        }
        for asset in [STYLE, SCRIPT, ICONS] {
            assert!(!asset.contains("{{"), "assets are inlined as they are");
            assert!(!asset.replace("http://www.w3.org/2000/svg", "").contains("http"), "no external URL");
        }
        assert!(!SCRIPT.contains("</script"), "the script is inlined");
        assert!(!STYLE.contains("</style"), "the stylesheet is inlined");
    }

    /// The hash in the policy is that of the script as the page carries it
    /// (`sha256sum`, then base64): edit `listing.js` and this says so.
    #[test]
    fn the_policy_allows_exactly_the_page_script() {
        use std::io::Write;
        assert!(LISTING.contains("<script>\n{{script}}\n</script>"), "the template wraps the script so");
        let mut child = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("\n{SCRIPT}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let hex = String::from_utf8(out.stdout).unwrap();
        let bytes: Vec<u8> =
            (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    b64.push('=');
                }
            }
        }
        assert!(
            LISTING_CSP.contains(&format!("'sha256-{b64}'")),
            "listing.js changed: the hash is now sha256-{b64}"
        );
    }

    #[test]
    fn error_pages_link_home_and_name_their_status() {
        for (status, title, _) in ERRORS {
            let page = error_page(status).unwrap();
            let page = std::str::from_utf8(&page).unwrap();
            assert!(page.contains("<!DOCTYPE html>"));
            assert!(page.contains(&status.to_string()) && page.contains(title));
            assert!(page.contains("href=\"/\""), "a link to /");
            assert!(!page.contains("{{"));
        }
        assert!(error_page(200).is_none());
    }
}
