//! Finding the Deno binary the workers run on.
//!
//! Deno comes from the npm registry (the `deno` package and its
//! `@deno/<platform>` binary package, pinned in the repository's
//! `package.json`). An explicit path wins (the server's `--deno` flag or the
//! `CONVEX_DENO` environment variable, passed in by the caller); otherwise we
//! walk up from the current directory and from the executable's directory
//! looking for `node_modules`. The binary found is run once with
//! `--version` before anything depends on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable that names the Deno binary, for callers that
/// want to honour it (the runtime itself reads no environment).
pub const DENO_ENV_VAR: &str = "CONVEX_DENO";

/// A Deno binary that ran `--version` successfully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenoBinary {
    /// Where it is.
    pub path: PathBuf,
    /// The version it reported (`2.9.6`).
    pub version: String,
}

/// Why no usable Deno binary was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DenoError {
    /// Nothing at any of the places searched.
    #[error(
        "no Deno binary found; searched: {}. Run `npm ci` in the repository (it installs the pinned `deno` package) or pass --deno <path> / set {DENO_ENV_VAR}",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound {
        /// Every candidate path tried, in order.
        searched: Vec<PathBuf>,
    },
    /// A binary was found but does not run or does not say it is Deno.
    #[error("the Deno binary at {} is not usable: {reason}", .path.display())]
    Unusable {
        /// The binary.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The relative paths, under a `node_modules` directory, where npm puts the
/// Deno binary on this platform: the platform package first, then the
/// copy the `deno` package's install script makes.
pub fn npm_binary_candidates() -> Vec<PathBuf> {
    let exe = if cfg!(windows) { "deno.exe" } else { "deno" };
    let mut out = Vec::new();
    if let Some(platform) = npm_platform_package() {
        out.push(Path::new("@deno").join(platform).join(exe));
    }
    out.push(Path::new("deno").join(exe));
    out
}

fn npm_platform_package() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-x64-glibc"),
        ("linux", "aarch64") => Some("linux-arm64-glibc"),
        ("macos", "x86_64") => Some("darwin-x64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        ("windows", "x86_64") => Some("win32-x64"),
        ("windows", "aarch64") => Some("win32-arm64"),
        _ => None,
    }
}

/// Finds and checks the Deno binary: `explicit` if given, else the first
/// npm-installed binary under a `node_modules` directory in the current
/// directory, the executable's directory, or any of their ancestors.
pub fn find_deno(explicit: Option<&Path>) -> Result<DenoBinary, DenoError> {
    let path = match explicit {
        Some(p) => {
            if !p.is_file() {
                return Err(DenoError::NotFound {
                    searched: vec![p.to_path_buf()],
                });
            }
            p.to_path_buf()
        }
        None => {
            let mut starts = Vec::new();
            if let Ok(cwd) = std::env::current_dir() {
                starts.push(cwd);
            }
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
            {
                starts.push(dir);
            }
            search_upwards(&starts)?
        }
    };
    let version = check_version(&path)?;
    Ok(DenoBinary { path, version })
}

/// The first npm-installed Deno binary found walking up from each of
/// `starts` in turn.
pub fn search_upwards(starts: &[PathBuf]) -> Result<PathBuf, DenoError> {
    let candidates = npm_binary_candidates();
    let mut searched = Vec::new();
    for start in starts {
        for dir in start.ancestors() {
            let node_modules = dir.join("node_modules");
            for candidate in &candidates {
                let path = node_modules.join(candidate);
                if path.is_file() {
                    return Ok(path);
                }
                if !searched.contains(&path) {
                    searched.push(path);
                }
            }
        }
    }
    Err(DenoError::NotFound { searched })
}

fn check_version(path: &Path) -> Result<String, DenoError> {
    let unusable = |reason: String| DenoError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let output = Command::new(path)
        .arg("--version")
        .env("NO_COLOR", "1")
        .env("DENO_NO_UPDATE_CHECK", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unusable(format!("could not run it: {e}")))?;
    if !output.status.success() {
        return Err(unusable(format!(
            "`--version` exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // "deno 2.9.6 (stable, release, x86_64-unknown-linux-gnu)"
    let version = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("deno "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| unusable(format!("unexpected `--version` output: {text:?}")))?;
    Ok(version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_what_was_searched() {
        let empty = tempfile::tempdir().unwrap();
        let err = search_upwards(&[empty.path().to_path_buf()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("npm ci"), "{text}");
        assert!(text.contains("CONVEX_DENO"), "{text}");
        assert!(
            text.contains(&empty.path().join("node_modules").display().to_string()),
            "{text}"
        );
        let missing = empty.path().join("nope");
        let err = find_deno(Some(&missing)).unwrap_err();
        assert!(matches!(err, DenoError::NotFound { .. }));
    }

    #[test]
    fn a_file_that_is_not_deno_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("deno");
        std::fs::write(&fake, "not a program").unwrap();
        let err = find_deno(Some(&fake)).unwrap_err();
        assert!(matches!(err, DenoError::Unusable { .. }), "{err}");
    }

    #[test]
    fn finds_a_binary_in_an_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let candidate = npm_binary_candidates().pop().unwrap();
        let bin = root.path().join("node_modules").join(&candidate);
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(&bin, "").unwrap();
        let deep = root.path().join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(search_upwards(&[deep]).unwrap(), bin);
    }
}
