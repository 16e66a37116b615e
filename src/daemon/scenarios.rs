//! Where the daemon reads the scenarios that requests name: only inside its scenario roots (the
//! working directory's `scenarios/`, the directories given with `--scenarios`, the directories
//! of the config's schedule scenarios, and a game day's files and directories). A name or a path
//! from a request never reaches a file outside them (`..` and symbolic links are resolved
//! before the check), and a file that is not a scenario is refused without a word of its content.

use std::path::{Component, Path, PathBuf};

use crate::scenario::{Diagnostic, Scenario};

/// Scenario files larger than this are not scenarios (as `siege validate` says).
const MAX_BYTES: u64 = 1 << 20;

/// Why the scenario a request names cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario: `{0}` is neither a name (letters, digits, `-`, `_`, `.`) nor a path ending in .yaml or .yml")]
    BadName(String),
    /// Not in any root, or no such file: the same answer, so that a request cannot probe which
    /// files exist outside them.
    #[error("no scenario `{given}` in the daemon's scenario directories ({})", .roots.join(", "))]
    Unknown { given: String, roots: Vec<String> },
    #[error("{0} is not a scenario (a YAML mapping with `name:`); `siege validate` on that file says more")]
    NotAScenario(String),
    #[error("a posted scenario's runbook must be a relative path inside the daemon's working directory, found `{0}`")]
    RunbookOutside(String),
    #[error("the scenario is not valid")]
    Invalid(Vec<Diagnostic>),
}

/// A request's scenario: a path (with a `/`, or ending in `.yaml` / `.yml`, relative to `workdir`)
/// inside one of `roots`, or a name: `NAME.yaml` then `NAME.yml` in each root directory in order,
/// a root file whose stem is `NAME`, then a root scenario whose `name:` is `NAME` (as the game-day
/// page lists it). The answer is the file's canonical path.
pub fn resolve(roots: &[PathBuf], workdir: &Path, x: &str) -> Result<PathBuf, ScenarioError> {
    let canon: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let inside = |p: &Path| -> Option<PathBuf> {
        let c = p.canonicalize().ok()?;
        let yaml = matches!(c.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        let under = canon.iter().any(|r| if r.is_dir() { c.starts_with(r) } else { c == *r });
        (yaml && under && c.is_file()).then_some(c)
    };
    let unknown = || ScenarioError::Unknown {
        given: x.to_string(),
        roots: roots.iter().map(|p| p.display().to_string()).collect(),
    };
    if x.contains('/') || x.ends_with(".yaml") || x.ends_with(".yml") {
        return inside(&workdir.join(x)).ok_or_else(unknown);
    }
    if x.is_empty() || x.starts_with('.') || !x.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(ScenarioError::BadName(x.to_string()));
    }
    for r in &canon {
        if r.is_dir() {
            for ext in ["yaml", "yml"] {
                if let Some(c) = inside(&r.join(format!("{x}.{ext}"))) {
                    return Ok(c);
                }
            }
        } else if r.file_stem().and_then(|s| s.to_str()) == Some(x) {
            return Ok(r.clone());
        }
    }
    for f in scenario_files(&canon) {
        if let Some(c) = inside(&f)
            && load(&c).is_ok_and(|sc| sc.name == x)
        {
            return Ok(c);
        }
    }
    Err(unknown())
}

/// The scenario files of `paths`: a file as given, a directory's `*.yaml` / `*.yml` sorted by
/// name; a path that does not exist is skipped.
pub fn scenario_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![];
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
            continue;
        }
        let Ok(rd) = std::fs::read_dir(p) else { continue };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|f| f.is_file() && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        for f in files {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

/// Reads and validates the scenario file `path` (one [`resolve`] answered): a file that is not a
/// scenario at all is refused without its diagnostics, which would quote it.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let bytes = crate::scenario::read_at_most(path, MAX_BYTES)
        .map_err(|_| ScenarioError::Unknown { given: path.display().to_string(), roots: vec![] })?;
    if bytes.len() as u64 > MAX_BYTES {
        // Its size, never its content.
        return crate::scenario::load_file(path).map_err(ScenarioError::Invalid);
    }
    if !crate::scenario::looks_like_scenario(&bytes) {
        return Err(ScenarioError::NotAScenario(path.display().to_string()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::scenario::load_bytes(&path.display().to_string(), &bytes, dir).map_err(ScenarioError::Invalid)
}

/// A scenario posted as YAML: its runbook, resolved from `workdir`, must stay inside it (no
/// absolute path, no `..`), so that a request cannot ask whether a file exists elsewhere.
pub fn load_posted(bytes: &[u8], workdir: &Path) -> Result<Scenario, ScenarioError> {
    if let Some(rb) = crate::scenario::top_level_text(bytes, "runbook") {
        let lexical = Path::new(&rb).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        // A symbolic link inside that leads outside is outside too.
        let resolved = workdir.join(&rb).canonicalize().ok();
        let base = workdir.canonicalize().unwrap_or_else(|_| workdir.to_path_buf());
        if !lexical || resolved.is_some_and(|r| !r.starts_with(&base)) {
            return Err(ScenarioError::RunbookOutside(rb));
        }
    }
    crate::scenario::load_bytes("posted.yaml", bytes, workdir).map_err(ScenarioError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("scenarios");
        std::fs::create_dir_all(root.join("aws")).unwrap();
        let sc = "name: {N}\nload: { url: /, rate: 10/s, duration: 10s }\nsteady_state: { error_rate: \"< 1%\" }\n\
                  recovery: { within: 10s }\n";
        std::fs::write(root.join("kill.yaml"), sc.replace("{N}", "task-kill-class")).unwrap();
        std::fs::write(root.join("aws/x.yml"), sc.replace("{N}", "x")).unwrap();
        std::fs::write(t.path().join("secret.yaml"), "root: \"*:19000:0:99999:7:::\"\n").unwrap();
        std::fs::write(root.join("notes.yaml"), "password: hunter2\n").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret.yaml"), root.join("link.yaml")).unwrap();
        (t, root)
    }

    #[test]
    fn names_and_paths_resolve_only_inside_the_roots() {
        let (t, root) = setup();
        let roots = [root.clone()];
        let w = t.path();
        let c = |p: &Path| p.canonicalize().unwrap();
        assert_eq!(resolve(&roots, w, "kill").unwrap(), c(&root.join("kill.yaml")));
        assert_eq!(resolve(&roots, w, "scenarios/aws/x.yml").unwrap(), c(&root.join("aws/x.yml")));
        assert_eq!(
            resolve(&roots, w, &root.join("kill.yaml").display().to_string()).unwrap(),
            c(&root.join("kill.yaml"))
        );
        // By the name inside the file, as the game-day page lists it.
        assert_eq!(resolve(&roots, w, "task-kill-class").unwrap(), c(&root.join("kill.yaml")));
        for outside in [
            "secret.yaml",
            "scenarios/../secret.yaml",
            "../../../../etc/shadow",
            "/etc/passwd",
            "scenarios/link.yaml",
            "scenarios/nope.yaml",
            "scenarios",
        ] {
            let e = resolve(&roots, w, outside).unwrap_err();
            assert!(matches!(e, ScenarioError::Unknown { .. }), "{outside}: {e}");
        }
        assert!(matches!(resolve(&roots, w, "link").unwrap_err(), ScenarioError::Unknown { .. }));
        assert!(matches!(resolve(&roots, w, "..").unwrap_err(), ScenarioError::BadName(_)));
        // A root that is a file admits that file only.
        let one = [root.join("kill.yaml")];
        assert!(resolve(&one, w, "kill").is_ok());
        assert!(resolve(&one, w, "scenarios/aws/x.yml").is_err());
    }

    #[test]
    fn a_file_that_is_not_a_scenario_is_refused_without_its_content() {
        let (_t, root) = setup();
        let e = load(&root.join("notes.yaml")).unwrap_err();
        assert!(matches!(e, ScenarioError::NotAScenario(_)));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(load(&root.join("kill.yaml")).is_ok());
    }

    #[test]
    fn a_posted_runbook_stays_inside_the_working_directory() {
        let t = tempfile::tempdir().unwrap();
        for rb in ["/etc/shadow", "../x.md", "a/../../b.md"] {
            let text = format!("name: p\nrunbook: {rb}\n");
            assert!(matches!(load_posted(text.as_bytes(), t.path()), Err(ScenarioError::RunbookOutside(_))), "{rb}");
        }
        std::os::unix::fs::symlink("/etc", t.path().join("etc")).unwrap();
        let e = load_posted(b"name: p\nrunbook: etc/passwd\n", t.path()).unwrap_err();
        assert!(matches!(e, ScenarioError::RunbookOutside(_)), "{e}");
        let e = load_posted(b"name: p\nrunbook: runbooks/x.md\n", t.path()).unwrap_err();
        assert!(matches!(e, ScenarioError::Invalid(_)));
    }
}
