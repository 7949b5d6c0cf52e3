//! The pushed modules of one deployment version, and where they live on disk.
//!
//! A [`ModuleSet`] is what the CLI pushed: ESM bundles keyed by their path
//! under `convex/` (`messages.js`, `_deps/ABCD1234.js`, `schema.js`), each
//! with its source map, plus the import-phase seed and time every module is
//! evaluated with. Its [`ModuleSetId`] is a hash of all of that, so a worker
//! that has imported a set once can keep its module instances for as long
//! as the id is the same.
//!
//! Invariant kept here: a set's directory under the modules root is named
//! by its id and is complete whenever it exists (it is written to a
//! temporary directory and renamed into place), so workers never import a
//! half-written module.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// One pushed module: its ESM source and, when the CLI sent one, its
/// source map (JSON text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// The bundled ESM source.
    pub source: String,
    /// The source map, JSON text.
    pub source_map: Option<String>,
}

/// The seed and the clock every module's top level is evaluated with
/// (Convex's `importPhaseRngSeed` / `importPhaseUnixTimestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ImportPhase {
    /// Seeds `Math.random` and `crypto.getRandomValues` while a module's
    /// top level runs.
    pub rng_seed: [u8; 32],
    /// What `Date.now()` answers while a module's top level runs, in
    /// milliseconds since the Unix epoch.
    pub unix_time_ms: u64,
}

/// A content hash naming a [`ModuleSet`]: lowercase hex of SHA-256 over
/// every path, source, source map and the import phase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleSetId(String);

impl ModuleSetId {
    /// The hex text (64 characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A module path the runtime refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid module path {path:?}: {reason}")]
pub struct InvalidModulePath {
    /// The path as given.
    pub path: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// The modules of one push, immutable once built. Share it as
/// `Arc<ModuleSet>`.
#[derive(Clone, Debug)]
pub struct ModuleSet {
    modules: BTreeMap<String, Module>,
    import_phase: ImportPhase,
    id: ModuleSetId,
}

impl ModuleSet {
    /// Builds a set from `(path, module)` pairs. Paths are relative,
    /// `/`-separated, end in `.js`, and have no `.`/`..` segments; a later
    /// duplicate replaces an earlier one.
    pub fn new(
        modules: impl IntoIterator<Item = (String, Module)>,
        import_phase: ImportPhase,
    ) -> Result<ModuleSet, InvalidModulePath> {
        let mut map = BTreeMap::new();
        for (path, module) in modules {
            check_module_path(&path)?;
            map.insert(path, module);
        }
        let id = compute_id(&map, &import_phase);
        Ok(ModuleSet {
            modules: map,
            import_phase,
            id,
        })
    }

    /// The content hash naming this set.
    pub fn id(&self) -> &ModuleSetId {
        &self.id
    }

    /// The import-phase seed and time.
    pub fn import_phase(&self) -> ImportPhase {
        self.import_phase
    }

    /// The module at `path` (`messages.js`), if pushed.
    pub fn get(&self, path: &str) -> Option<&Module> {
        self.modules.get(path)
    }

    /// Every module, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Module)> {
        self.modules.iter().map(|(p, m)| (p.as_str(), m))
    }

    /// How many modules the set holds.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True when the set holds no module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Writes the set under `root` as `root/<id>/<path>` (plus
    /// `<path>.map` for source maps) unless that directory already exists,
    /// and returns the directory. Safe against concurrent writers of the
    /// same set: each writes a private temporary directory and renames it
    /// into place; the loser of the race deletes its copy.
    pub fn write_to(&self, root: &Path) -> io::Result<PathBuf> {
        let dir = root.join(self.id.as_str());
        if dir.is_dir() {
            return Ok(dir);
        }
        fs::create_dir_all(root)?;
        static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
        let tmp = root.join(format!(
            ".tmp-{}-{}-{}",
            self.id.as_str(),
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            fs::create_dir_all(&tmp)?;
            for (path, module) in &self.modules {
                let file = tmp.join(path);
                if let Some(parent) = file.parent() {
                    fs::create_dir_all(parent)?;
                }
                fs::write(&file, &module.source)?;
                if let Some(map) = &module.source_map {
                    fs::write(tmp.join(format!("{path}.map")), map)?;
                }
            }
            Ok::<(), io::Error>(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(dir),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                if dir.is_dir() {
                    Ok(dir)
                } else {
                    Err(e)
                }
            }
        }
    }
}

fn check_module_path(path: &str) -> Result<(), InvalidModulePath> {
    let refuse = |reason| {
        Err(InvalidModulePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return refuse("empty");
    }
    if path.len() > 1024 {
        return refuse("longer than 1024 bytes");
    }
    if !path.ends_with(".js") {
        return refuse("must end in .js");
    }
    if path.starts_with('/') || path.contains('\\') {
        return refuse("must be relative and /-separated");
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return refuse("empty, . or .. segment");
        }
        if segment.starts_with(".tmp-") {
            return refuse("reserved name");
        }
    }
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, ':' | '?' | '#' | '%'))
    {
        return refuse("control character or one of : ? # %");
    }
    Ok(())
}

fn compute_id(modules: &BTreeMap<String, Module>, import_phase: &ImportPhase) -> ModuleSetId {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"convex-rs module set v1");
    field(&import_phase.rng_seed);
    field(&import_phase.unix_time_ms.to_le_bytes());
    for (path, module) in modules {
        field(path.as_bytes());
        field(module.source.as_bytes());
        match &module.source_map {
            Some(map) => {
                field(b"map");
                field(map.as_bytes());
            }
            None => field(b"none"),
        }
    }
    let digest = h.finalize();
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    ModuleSetId(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(source: &str) -> Module {
        Module {
            source: source.to_owned(),
            source_map: None,
        }
    }

    #[test]
    fn id_depends_on_every_part() {
        let a = ModuleSet::new(
            [("a.js".to_owned(), module("export const x = 1;"))],
            ImportPhase::default(),
        )
        .unwrap();
        let same = ModuleSet::new(
            [("a.js".to_owned(), module("export const x = 1;"))],
            ImportPhase::default(),
        )
        .unwrap();
        let other_source = ModuleSet::new(
            [("a.js".to_owned(), module("export const x = 2;"))],
            ImportPhase::default(),
        )
        .unwrap();
        let other_phase = ModuleSet::new(
            [("a.js".to_owned(), module("export const x = 1;"))],
            ImportPhase {
                rng_seed: [1; 32],
                unix_time_ms: 0,
            },
        )
        .unwrap();
        let other_map = ModuleSet::new(
            [(
                "a.js".to_owned(),
                Module {
                    source: "export const x = 1;".to_owned(),
                    source_map: Some("{}".to_owned()),
                },
            )],
            ImportPhase::default(),
        )
        .unwrap();
        assert_eq!(a.id(), same.id());
        assert_ne!(a.id(), other_source.id());
        assert_ne!(a.id(), other_phase.id());
        assert_ne!(a.id(), other_map.id());
        assert_eq!(a.id().as_str().len(), 64);
    }

    #[test]
    fn refuses_bad_paths() {
        for bad in [
            "",
            "a.ts",
            "/a.js",
            "../a.js",
            "a/../b.js",
            "a//b.js",
            "./a.js",
            "a:b.js",
            "a\\b.js",
            ".tmp-x/a.js",
        ] {
            assert!(
                ModuleSet::new([(bad.to_owned(), module(""))], ImportPhase::default()).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(ModuleSet::new(
            [("_deps/ABC-12.js".to_owned(), module(""))],
            ImportPhase::default()
        )
        .is_ok());
    }

    #[test]
    fn writes_once_and_completely() {
        let root = tempfile::tempdir().unwrap();
        let set = ModuleSet::new(
            [
                ("a.js".to_owned(), module("export const x = 1;")),
                (
                    "_deps/b.js".to_owned(),
                    Module {
                        source: "export const y = 2;".to_owned(),
                        source_map: Some("{\"version\":3}".to_owned()),
                    },
                ),
            ],
            ImportPhase::default(),
        )
        .unwrap();
        let dir = set.write_to(root.path()).unwrap();
        assert_eq!(dir, root.path().join(set.id().as_str()));
        assert_eq!(
            fs::read_to_string(dir.join("a.js")).unwrap(),
            "export const x = 1;"
        );
        assert_eq!(
            fs::read_to_string(dir.join("_deps/b.js.map")).unwrap(),
            "{\"version\":3}"
        );
        // A second write finds the directory and leaves no temporary behind.
        assert_eq!(set.write_to(root.path()).unwrap(), dir);
        let entries: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }
}
