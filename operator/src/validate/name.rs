//! The name grammars of Kubernetes objects and fields that WasmApp values end up in: DNS-1123
//! labels and subdomains, DNS-1035 labels (Service names), IANA service names (port names),
//! label values and keys, environment variable names. Each check returns what is wrong, or
//! nothing.

/// The longest label value (and DNS label).
pub const MAX_LABEL: usize = 63;

fn lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A DNS-1123 label (volume names): ≤ 63 characters, lower-case letters, digits and `-`,
/// starting and ending with a letter or digit.
pub fn dns_label(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > MAX_LABEL {
        return Some(format!("is {} characters, more than {MAX_LABEL}", s.len()));
    }
    if !s.chars().all(|c| lower_alnum(c) || c == '-') {
        return Some("may hold only lower-case letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// A DNS-1035 label (Service names): a DNS-1123 label that starts with a letter.
pub fn service_name(s: &str) -> Option<String> {
    dns_label(s).or_else(|| {
        (!s.starts_with(|c: char| c.is_ascii_lowercase()))
            .then(|| "must start with a lower-case letter".into())
    })
}

/// A DNS-1123 subdomain (ConfigMap, Secret, claim, ServiceAccount names): ≤ 253 characters,
/// dot-separated DNS-1123 labels.
pub fn dns_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!("is {} characters, more than 253", s.len()));
    }
    if s.is_empty() {
        return Some("is empty".into());
    }
    if !s.chars().all(|c| lower_alnum(c) || c == '-' || c == '.') {
        return Some("may hold only lower-case letters, digits, '-' and '.'".into());
    }
    if s.split('.')
        .any(|part| part.is_empty() || part.starts_with('-') || part.ends_with('-'))
    {
        return Some("must start and end with a letter or digit, around every '.'".into());
    }
    None
}

/// An IANA service name (port names): ≤ 15 characters, lower-case letters, digits and `-`, at
/// least one letter, no `-` at either end and no `--`.
pub fn port_name(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if s.len() > 15 {
        return Some(format!("is {} characters, more than 15", s.len()));
    }
    if !s.chars().all(|c| lower_alnum(c) || c == '-') {
        return Some("may hold only lower-case letters, digits and '-'".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some("must contain at least one letter".into());
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Some("may not start or end with '-' or hold '--'".into());
    }
    None
}

/// A label value: ≤ 63 characters, letters, digits, `-`, `_` and `.`, starting and ending with
/// a letter or digit (or empty).
pub fn label_value(s: &str) -> Option<String> {
    if s.len() > MAX_LABEL {
        return Some(format!("is {} characters, more than {MAX_LABEL}", s.len()));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("may hold only letters, digits, '-', '_' and '.'".into());
    }
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if !(edge_ok(s.chars().next()) && edge_ok(s.chars().last())) {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of ≤ 63
/// letters, digits, `-`, `_` and `.` that starts and ends with a letter or digit.
pub fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(why) = prefix.and_then(dns_subdomain) {
        return Some(format!("has a prefix that {why}"));
    }
    if name.is_empty() {
        return Some("has an empty name".into());
    }
    label_value(name).map(|why| format!("has a name that {why}"))
}

/// An environment variable name: letters, digits, `_`, `-` and `.`, not starting with a digit.
pub fn env_name(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some("may hold only letters, digits, '_', '-' and '.'".into());
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Some("may not start with a digit".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana_service_name_rules() {
        for good in ["http", "web-2", "a", "h2c", "metrics-port-01"] {
            assert_eq!(port_name(good), None, "{good}");
        }
        for bad in [
            "",
            "HTTP",
            "web_2",
            "8080",
            "-web",
            "web-",
            "we--b",
            "metrics-port-012",
        ] {
            assert!(port_name(bad).is_some(), "{bad:?} passed");
        }
    }

    #[test]
    fn dns_labels_subdomains_and_service_names() {
        assert_eq!(dns_label("data-1"), None);
        let long = "a".repeat(64);
        for bad in ["", "Data", "data_1", "-data", "data-", long.as_str(), "a.b"] {
            assert!(dns_label(bad).is_some(), "{bad:?} passed");
        }
        assert_eq!(dns_subdomain("conf.v1-a"), None);
        let long = "a".repeat(254);
        for bad in ["", "a..b", ".a", "a-.b", "A", long.as_str()] {
            assert!(dns_subdomain(bad).is_some(), "{bad:?} passed");
        }
        assert_eq!(service_name("web"), None);
        assert!(service_name("1web").is_some());
    }

    #[test]
    fn label_values_keys_and_env_names() {
        for good in ["", "v1.2_rc-3", "A"] {
            assert_eq!(label_value(good), None, "{good:?}");
        }
        let long = "a".repeat(64);
        for bad in ["-a", "a-", "a b", long.as_str()] {
            assert!(label_value(bad).is_some(), "{bad:?} passed");
        }
        assert_eq!(qualified_name("example.com/tier"), None);
        assert_eq!(qualified_name("tier"), None);
        for bad in ["Example.com/tier", "/tier", "example.com/", "a/b/c"] {
            assert!(qualified_name(bad).is_some(), "{bad:?} passed");
        }
        assert_eq!(env_name("RUST_LOG"), None);
        assert_eq!(env_name("my.var-1"), None);
        for bad in ["", "1X", "A B", "A=B"] {
            assert!(env_name(bad).is_some(), "{bad:?} passed");
        }
    }
}
