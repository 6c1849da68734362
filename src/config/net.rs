//! The network side of the configuration: where to listen (TCP, unix
//! sockets, TLS), which peers' forwarded headers to believe, and which form
//! of validator to send. Parsing and validation only; the server binds.

use super::cidr::Cidr;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Default permissions of a unix socket mapserve creates.
pub const DEFAULT_UNIX_MODE: u32 = 0o660;
/// Default largest file whose bytes are hashed for `--etag content`.
pub const DEFAULT_ETAG_HASH_MAX: u64 = 256 << 20;

/// One address to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix stream socket at this path (absolute).
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Parses `--listen` values: `HOST:PORT` (every address it resolves to) or
/// `unix:PATH`. Duplicates are dropped (but not port 0, which binds anew).
pub fn listen_addrs(texts: &[String], unix_ok: bool) -> Result<Vec<ListenAddr>, String> {
    let mut out = Vec::new();
    for text in texts {
        if let Some(path) = text.strip_prefix("unix:") {
            if !unix_ok {
                return Err(format!("`{text}`: TLS listens on TCP addresses only"));
            }
            if path.is_empty() || path.contains('\0') {
                return Err(format!("`{text}`: expected unix:/path/to.sock"));
            }
            let path = std::path::absolute(path).map_err(|e| format!("`{text}`: {e}"))?;
            // sun_path holds 108 bytes, the terminating NUL included.
            if path.as_os_str().len() > 107 {
                return Err(format!("`{text}`: a unix socket path is at most 107 bytes"));
            }
            let addr = ListenAddr::Unix(path);
            if !out.contains(&addr) {
                out.push(addr);
            }
            continue;
        }
        let hint = if unix_ok { "HOST:PORT or unix:/path" } else { "HOST:PORT" };
        let addrs = text.to_socket_addrs().map_err(|e| format!("`{text}`: {e} (expected {hint})"))?;
        for addr in addrs {
            let addr = ListenAddr::Tcp(addr);
            if matches!(addr, ListenAddr::Tcp(a) if a.port() == 0) || !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    Ok(out)
}

/// `--unix-mode`: octal permission bits, such as `0660` or `660`.
pub fn unix_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim().trim_start_matches("0o");
    let mode =
        u32::from_str_radix(digits, 8).map_err(|_| format!("`{text}` is not an octal mode such as 0660"))?;
    if mode > 0o777 {
        return Err(format!("`{text}`: only the permission bits (at most 0777) apply to a socket"));
    }
    if mode & 0o200 == 0 {
        return Err(format!("`{text}`: without owner write permission (0200) nobody but root could connect"));
    }
    Ok(mode)
}

/// The certificate and key of the TLS listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The peers whose `Forwarded` and `X-Forwarded-*` headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Networks.
    pub nets: Vec<Cidr>,
    /// Peers on unix sockets (`unix`).
    pub unix: bool,
}

impl TrustedProxies {
    /// Parses `--trusted-proxy` values.
    pub fn parse(texts: &[String]) -> Result<TrustedProxies, String> {
        let mut trusted = TrustedProxies::default();
        for text in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            if text == "unix" {
                trusted.unix = true;
            } else {
                let net: Cidr = text.parse().map_err(|e| format!("`{text}`: {e}"))?;
                if !trusted.nets.contains(&net) {
                    trusted.nets.push(net);
                }
            }
        }
        Ok(trusted)
    }

    /// No peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    /// Whether a peer at `ip` is trusted.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// What an `ETag` is made of (`--etag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EtagMode {
    /// Size, mtime, inode, ctime and device: changes with any replacement.
    #[default]
    Strict,
    /// mtime and size, in nginx's form: the same across replicas whose
    /// deploys keep mtimes.
    Metadata,
    /// A hash of the bytes: the same wherever the bytes are the same.
    Content,
}

impl EtagMode {
    /// Parses `strict`, `metadata` or `content`.
    pub fn parse(text: &str) -> Result<EtagMode, String> {
        match text {
            "strict" => Ok(EtagMode::Strict),
            "metadata" => Ok(EtagMode::Metadata),
            "content" => Ok(EtagMode::Content),
            other => Err(format!("`{other}` is not one of strict, metadata, content")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_unix_paths() {
        let got =
            listen_addrs(&["127.0.0.1:0".into(), "127.0.0.1:0".into(), "unix:/run/m.sock".into()], true)
                .unwrap();
        assert_eq!(got.len(), 3, "port 0 binds twice; {got:?}");
        assert_eq!(got[2], ListenAddr::Unix("/run/m.sock".into()));
        assert_eq!(got[2].to_string(), "unix:/run/m.sock");
        assert!(listen_addrs(&["unix:/a".into()], false).unwrap_err().contains("TCP addresses only"));
        assert!(listen_addrs(&["unix:".into()], true).is_err());
        assert!(listen_addrs(&[format!("unix:/{}", "x".repeat(120))], true).unwrap_err().contains("107"));
        assert!(listen_addrs(&["nohost".into()], true).unwrap_err().contains("unix:/path"));
        let dup = listen_addrs(&["127.0.0.1:81".into(), "127.0.0.1:81".into()], true).unwrap();
        assert_eq!(dup.len(), 1);
    }

    #[test]
    fn unix_modes() {
        assert_eq!(unix_mode("0660"), Ok(0o660));
        assert_eq!(unix_mode("666"), Ok(0o666));
        assert_eq!(unix_mode("0o600"), Ok(0o600));
        assert!(unix_mode("0999").is_err());
        assert!(unix_mode("1777").is_err());
        assert!(unix_mode("0440").unwrap_err().contains("owner write"));
    }

    #[test]
    fn trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "unix".into(), " ".into()]).unwrap();
        assert!(t.unix && t.trusts("10.1.2.3".parse().unwrap()) && !t.trusts("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn etag_modes() {
        assert_eq!(EtagMode::parse("content"), Ok(EtagMode::Content));
        assert!(EtagMode::parse("weak").is_err());
    }
}
