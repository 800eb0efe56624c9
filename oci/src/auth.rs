//! Registry credentials from a `.dockerconfigjson` (the format of Kubernetes `imagePullSecrets`
//! and `~/.docker/config.json`).

use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;

use crate::fetch::RegistryConfig;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// Per-registry credentials from a `.dockerconfigjson` document. Keys are normalised to
/// `host[:port]` (`https://index.docker.io/v1/` becomes `docker.io`).
pub fn from_docker_config(json: &[u8]) -> Result<HashMap<String, RegistryConfig>, String> {
    let config: DockerConfig =
        serde_json::from_slice(json).map_err(|e| format!("not a .dockerconfigjson: {e}"))?;
    let mut out = HashMap::new();
    for (key, entry) in config.auths {
        let host = normalise(&key);
        let (username, password) = match (&entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                let (user, password) = text
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                (Some(user.to_string()), Some(password.to_string()))
            }
            (_, username, password) => (username, password),
        };
        out.insert(
            host,
            RegistryConfig {
                insecure: false,
                username,
                password,
                token: entry.registrytoken,
            },
        );
    }
    Ok(out)
}

fn normalise(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_and_explicit_fields_both_give_credentials() {
        let json = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "127.0.0.1:5000": {"username": "ci", "password": "pw"},
            "ghcr.io": {"registrytoken": "tok"}
        }}"#;
        let got = from_docker_config(json).expect("parses");
        assert_eq!(got["docker.io"].username.as_deref(), Some("u"));
        assert_eq!(got["docker.io"].password.as_deref(), Some("p"));
        assert_eq!(got["127.0.0.1:5000"].username.as_deref(), Some("ci"));
        assert_eq!(got["ghcr.io"].token.as_deref(), Some("tok"));
        let err = from_docker_config(br#"{"auths": {"r": {"auth": "!!"}}}"#).expect_err("bad");
        assert!(err.contains("auths.r.auth is not base64"), "{err}");
    }
}
