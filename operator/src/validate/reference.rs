//! Module references as the operator and the shim resolve them: `registry/repository:tag` or
//! `registry/repository@sha256:<64 hex>`. Stricter than a plain pattern where that lets a
//! mistake through: `host:5000` (a registry with no repository reads as repository `host`, tag
//! `5000`) and upper-case repository paths (which no registry serves).

/// The kind of mistake, which picks the CRD rule whose message applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Only a registry (or a bare name): no `registry/repository`.
    NoRepository,
    /// Upper-case letters in the repository path.
    UpperCase,
    /// Anything else: no tag or digest, a bad tag, digest, host or path component.
    Malformed,
}

/// What is wrong with `reference`, or nothing.
pub fn check(reference: &str) -> Option<(Flaw, String)> {
    use Flaw::*;
    if reference.is_empty() {
        return Some((Malformed, "is empty".into()));
    }
    if reference.chars().any(|c| c.is_whitespace()) {
        return Some((Malformed, "holds white space".into()));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name, None),
    };
    let Some((registry, repository)) = name.split_once('/') else {
        return Some((
            NoRepository,
            format!("names no repository ({name:?} is at most a registry)"),
        ));
    };
    if !registry_host(registry) {
        return Some((
            Malformed,
            format!("starts with {registry:?}, which is not a registry host[:port]"),
        ));
    }
    if repository.is_empty() {
        return Some((NoRepository, "names no repository".into()));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Some((
            UpperCase,
            format!(
                "has the repository {repository:?} (use {:?})",
                repository.to_ascii_lowercase()
            ),
        ));
    }
    if let Some(part) = repository.split('/').find(|p| !path_component(p)) {
        return Some((
            Malformed,
            format!(
                "has the repository path component {part:?} (components are lower-case letters \
                 and digits, separated by '.', '_', '__' or '-')"
            ),
        ));
    }
    if name.len() > 255 {
        return Some((
            Malformed,
            format!("has a name of {} characters, more than 255", name.len()),
        ));
    }
    if tag.is_none() && digest.is_none() {
        return Some((Malformed, "has no tag or digest".into()));
    }
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Some((
                Malformed,
                format!(
                    "has the tag {t:?} (a tag is up to 128 letters, digits, '_', '.' and '-', not \
                     starting with '.' or '-')"
                ),
            ));
        }
    }
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Some((
                Malformed,
                format!("has the digest {d:?} (sha256: and 64 lower-case hex digits)"),
            ));
        }
    }
    None
}

/// `host[:port]`: DNS labels (any case) separated by dots, and a numeric port.
fn registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && host_ok
}

/// One repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn path_component(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !s.starts_with(alnum) || !s.ends_with(alnum) {
        return false;
    }
    let mut separator = String::new();
    for c in s.chars() {
        if alnum(c) {
            if !matches!(separator.as_str(), "" | "." | "_" | "__")
                && !separator.bytes().all(|b| b == b'-')
            {
                return false;
            }
            separator.clear();
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_registry_a_lower_case_repository_and_a_tag_or_digest() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for good in [
            "registry.example/team/app:1.0".to_string(),
            "localhost:5000/wasmkube/probe:p2".to_string(),
            "127.0.0.1:5000/hello:v1".to_string(),
            "Registry.Example/app:1".to_string(),
            format!("registry.example/a/b@{digest}"),
            format!("registry.example/a/b:1@{digest}"),
            "registry.example/my_app__x/a-b--c.d:latest".to_string(),
        ] {
            assert_eq!(check(&good), None, "{good}");
        }
        use Flaw::*;
        for (bad, flaw, says) in [
            ("host:5000", NoRepository, "names no repository"),
            ("registry.example:5000", NoRepository, "names no repository"),
            ("app:1", NoRepository, "names no repository"),
            ("registry.example/:1", NoRepository, "names no repository"),
            ("registry.example/Team/App:1", UpperCase, "\"team/app\""),
            ("registry.example/team/app", Malformed, "no tag or digest"),
            ("registry.example/team/app:", Malformed, "tag"),
            ("registry.example/team/app:-x", Malformed, "tag"),
            ("registry.example/team/app@sha256:abc", Malformed, "digest"),
            ("registry.example/team/-app:1", Malformed, "component"),
            ("registry.example/team//app:1", Malformed, "component"),
            ("registry.example/te..am/app:1", Malformed, "component"),
            ("reg_istry/app:1", Malformed, "registry host"),
            ("/app:1", Malformed, "registry host"),
            ("registry.example/app:1 ", Malformed, "white space"),
            ("", Malformed, "empty"),
        ] {
            let (got, why) = check(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert_eq!(got, flaw, "{bad:?}: {why}");
            assert!(why.contains(says), "{bad:?}: {why}");
        }
    }
}
