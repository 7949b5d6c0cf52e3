//! The admin key: made at first start, kept in the data directory, and
//! required by every admin endpoint (deploy, `/api/function`, ...).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use axum::http::HeaderMap;
use rand::RngCore;

/// The file in the data directory that holds the admin key.
pub const ADMIN_KEY_FILE: &str = "admin_key";

/// Reads the data directory's admin key, or makes and durably stores one.
/// The key has the `<name>|<secret>` shape the official CLI expects.
pub fn load_or_create(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(ADMIN_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let key = s.trim().to_string();
            if key.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is empty; delete it to make a new key", path.display()),
                ));
            }
            return Ok(key);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("convexd|{hex}");
    let tmp = data_dir.join(format!("{ADMIN_KEY_FILE}.tmp"));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(key.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(data_dir)?.sync_all()?;
    Ok(key)
}

/// What the `Authorization` header (or `?adminKey=`) says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// `Authorization: Convex <key>` or `?adminKey=<key>`; the part after a
    /// `:` (an identity to act as) is split off.
    Admin {
        key: String,
        acting_as: Option<String>,
    },
    /// `Authorization: Bearer <jwt>`.
    User(String),
}

impl Credentials {
    /// Reads the credentials of a request.
    pub fn from_request(headers: &HeaderMap, query: Option<&str>) -> Credentials {
        if let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let value = value.trim();
            if value.len() > 7 && value[..7].eq_ignore_ascii_case("convex ") {
                let rest = value[7..].trim();
                // `name|secret`, possibly `prod:name|secret`; an identity
                // to act as follows a `:` after the `|`.
                let split = rest
                    .find('|')
                    .and_then(|bar| rest[bar..].find(':').map(|c| bar + c));
                let (key, acting_as) = match split {
                    Some(c) => (&rest[..c], Some(rest[c + 1..].to_string())),
                    None => (rest, None),
                };
                return Credentials::Admin {
                    key: key.to_string(),
                    acting_as,
                };
            }
            if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") {
                return Credentials::User(value[7..].trim().to_string());
            }
        }
        if let Some(q) = query {
            for pair in q.split('&') {
                if let Some(v) = pair.strip_prefix("adminKey=") {
                    return Credentials::Admin {
                        key: percent_decode(v),
                        acting_as: None,
                    };
                }
            }
        }
        Credentials::None
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares two keys in time independent of where they differ.
pub fn keys_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = load_or_create(dir.path()).unwrap();
        let k2 = load_or_create(dir.path()).unwrap();
        assert_eq!(k1, k2);
        assert!(k1.starts_with("convexd|") && k1.len() == 8 + 64);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), k1);
    }

    #[test]
    fn credentials_are_read_from_the_header_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(Credentials::from_request(&h, None), Credentials::None);
        h.insert("authorization", HeaderValue::from_static("convex abc|def"));
        assert_eq!(
            Credentials::from_request(&h, None),
            Credentials::Admin {
                key: "abc|def".into(),
                acting_as: None
            }
        );
        h.insert(
            "authorization",
            HeaderValue::from_static("Convex abc|def:eyJ0b2tlbiI6MX0="),
        );
        assert_eq!(
            Credentials::from_request(&h, None),
            Credentials::Admin {
                key: "abc|def".into(),
                acting_as: Some("eyJ0b2tlbiI6MX0=".into())
            }
        );
        h.insert("authorization", HeaderValue::from_static("Bearer x.y.z"));
        assert_eq!(
            Credentials::from_request(&h, None),
            Credentials::User("x.y.z".into())
        );
        let h = HeaderMap::new();
        assert_eq!(
            Credentials::from_request(&h, Some("a=1&adminKey=k%7Cv")),
            Credentials::Admin {
                key: "k|v".into(),
                acting_as: None
            }
        );
        assert!(keys_equal("abc", "abc") && !keys_equal("abc", "abd") && !keys_equal("a", "ab"));
    }
}
