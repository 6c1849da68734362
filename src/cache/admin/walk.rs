//! Which files a glob names: `--prewarm GLOB` and the admin API's `glob=`
//! select files under ROOT by a glob over their path relative to ROOT
//! (`videos/*.mp4`, `**/*.css`; a leading `/` is allowed, `*` does not
//! cross `/`). Cached entries are matched by their key; files not cached
//! yet are found by walking ROOT, skipping what a request could not reach
//! (dotfiles unless `--hidden`, symlinked directories), and stopping at
//! [`WALK_MAX`] entries so that a glob over a huge tree cannot stall.

use globset::{GlobBuilder, GlobMatcher};
use std::path::Path;

/// Most directory entries one walk visits.
pub const WALK_MAX: usize = 200_000;

/// A compiled glob over relative paths.
pub fn pattern(glob: &str) -> Result<GlobMatcher, String> {
    let relative = glob.trim_start_matches('/');
    if relative.is_empty() {
        return Err(format!("`{glob}` matches nothing: name files relative to ROOT"));
    }
    GlobBuilder::new(relative)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("`{glob}` is not a glob: {e}"))
}

/// A path from the admin API (`/dir/file`) as a cache key, if it is a plain
/// relative path a request could name.
pub fn key(path: &str, hidden: bool) -> Option<Vec<u8>> {
    let relative = path.trim_start_matches('/');
    let ok = relative.split('/').all(|s| {
        !s.is_empty() && s != "." && s != ".." && !s.contains('\0') && (hidden || !s.starts_with('.'))
    });
    (ok && !relative.is_empty()).then(|| relative.as_bytes().to_vec())
}

/// The regular files under `root` that `glob` matches, as keys, in walk
/// order; `truncated` when the walk stopped at [`WALK_MAX`].
pub fn find(root: &Path, glob: &GlobMatcher, hidden: bool) -> (Vec<Vec<u8>>, bool) {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let mut visited = 0usize;
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else { continue };
        let mut children: Vec<_> = read.flatten().collect();
        children.sort_by_key(|e| e.file_name());
        for child in children.into_iter().rev() {
            visited += 1;
            if visited > WALK_MAX {
                return (found, true);
            }
            let Some(name) = child.file_name().to_str().map(str::to_owned) else { continue };
            if !hidden && name.starts_with('.') {
                continue;
            }
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let Ok(kind) = child.file_type() else { continue };
            if kind.is_dir() {
                stack.push((child.path(), relative));
            } else if (kind.is_file() || kind.is_symlink()) && glob.is_match(&relative) {
                found.push(relative.into_bytes());
            }
        }
    }
    found.sort();
    (found, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_relative_paths_and_stay_inside_segments() {
        let g = pattern("/videos/*.mp4").unwrap();
        assert!(g.is_match("videos/a.mp4"));
        assert!(!g.is_match("videos/sub/a.mp4"));
        assert!(pattern("**/*.css").unwrap().is_match("a/b/c.css"));
        assert!(pattern("/").is_err());
        assert!(pattern("a[").is_err());
    }

    #[test]
    fn admin_paths_become_keys_only_when_plain() {
        assert_eq!(key("/a/b.txt", false), Some(b"a/b.txt".to_vec()));
        for bad in ["/", "/../etc/passwd", "/a//b", "/a/./b", "/.env"] {
            assert_eq!(key(bad, false), None, "{bad}");
        }
        assert_eq!(key("/.env", true), Some(b".env".to_vec()));
    }

    #[test]
    fn a_walk_finds_matching_files_and_skips_dotfiles() {
        let dir = std::env::temp_dir().join(format!("mapserve-walk-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub/.hid")).unwrap();
        for f in ["a.bin", "sub/b.bin", "sub/c.txt", ".d.bin", "sub/.hid/e.bin"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let (found, truncated) = find(&dir, &pattern("**/*.bin").unwrap(), false);
        assert!(!truncated);
        assert_eq!(found, vec![b"a.bin".to_vec(), b"sub/b.bin".to_vec()]);
        let (found, _) = find(&dir, &pattern("**/*.bin").unwrap(), true);
        assert_eq!(found.len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
