//! How this process reaches object storage: one value, [`StorageSettings`], read from the
//! environment once by a face ([`StorageSettings::from_env`]), with the flags and the config
//! file laid over it ([`StorageSettings::with_config`], by `config::Settings`), and handed to
//! the engine — repositories (`cube::RepoLocation`), sources and their reads (`source`),
//! plans' places (`scaleout`) and GDAL's set-up all take it from there.
//!
//! The variables read, all optional: `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION`
//! / `AWS_DEFAULT_REGION`, `AWS_NO_SIGN_REQUEST`, `AWS_S3_ENDPOINT` (only whether GDAL's own
//! is set), `CPL_GS_ENDPOINT`, `GS_NO_SIGN_REQUEST` and `TILECUBE_GDAL_CACHEMAX`.
//!
//! Invariants:
//! - below the faces, nothing in the engine reads the process environment for storage: the
//!   environment is read here, through a lookup the caller gives ([`StorageSettings::from_lookup`]),
//!   so a test passes a map;
//! - a yes/no variable means the same everywhere: [`parse_bool`] is the one reading of
//!   yes/true/on/1 and no/false/off/0 (any case); unset or empty is no, anything else is an
//!   error naming the variable ([`StorageSettingsError`]), as is a GDAL cache size GDAL would
//!   misread;
//! - it holds no credential: keys, tokens, profiles and service accounts are read by the
//!   storage clients themselves (object_store's builders, the AWS SDK's chain, Google's
//!   application default credentials, GDAL), so nothing here can print, log or store one;
//!   its `Debug` shows endpoints without any user or password they carry.

use std::fmt;

/// Errors in the storage settings the environment gives, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageSettingsError {
    #[error("{var}={value:?}: expected yes or no (or true/false, on/off, 1/0)")]
    Flag { var: &'static str, value: String },
    #[error(
        "TILECUBE_GDAL_CACHEMAX={value:?}: expected GDAL's block cache size in megabytes (a whole \
         number below 100000, e.g. 64) or as a share of memory (at most 100%, e.g. 5%)"
    )]
    GdalCacheMax { value: String },
    #[error("{var}={value:?} is not an endpoint URL: {reason}")]
    Endpoint {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Why `value` cannot be an object store's endpoint (`None`: it can): it must be an absolute
/// `http://` or `https://` URL with a host and a valid port. Checked where a setting is read,
/// so a mistyped endpoint is named with its setting instead of failing deep in a client.
pub fn endpoint_problem(value: &str) -> Option<String> {
    match url::Url::parse(value.trim()) {
        Err(e) => Some(format!(
            "{e} (expected an absolute URL such as http://127.0.0.1:9000)"
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "its scheme is {:?}; expected http or https",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("it names no host".into()),
        Ok(_) => None,
    }
}

/// The one reading of a yes/no setting: `yes`, `true`, `on`, `1` are yes and `no`, `false`,
/// `off`, `0` are no, in any case and with spaces around; anything else is `None`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Some(true),
        "no" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// S3 connection settings of a repository (`[s3]` in the config file, the `--s3-*` flags);
/// anything left `None` falls back to the environment (`AWS_REGION`, `AWS_ENDPOINT_URL`;
/// credentials from `AWS_*` and profiles, read by the storage client).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub path_style: Option<bool>,
    pub anonymous: Option<bool>,
}

/// How the storage client of a repository in an object store retries a failed request
/// (Icechunk's storage settings, for S3 and GCS alike). Anything left `None` keeps
/// Icechunk's default: 10 tries, the first back-off 100 ms, at most 3 minutes between tries.
/// Set when the client is made (the first request), so it holds for the whole process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRetries {
    /// Tries of one request, the first included (at least 1).
    pub tries: Option<std::num::NonZeroU16>,
    pub initial_backoff_ms: Option<u32>,
    pub max_backoff_ms: Option<u32>,
}

impl StorageRetries {
    /// Whether every value is Icechunk's default.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What the standard AWS variables say to tilecube's own S3 clients.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsEnv {
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (an S3-compatible service).
    pub endpoint_url: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `AWS_NO_SIGN_REQUEST`: unsigned reads of `s3://` sources and places.
    pub no_sign_request: bool,
    /// Whether GDAL's own `AWS_S3_ENDPOINT` is set: GDAL then gets no endpoint from tilecube.
    pub gdal_s3_endpoint_set: bool,
}

/// How `gs://` is reached.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GcsAccess {
    /// The endpoint the settings name (`--gcs-endpoint`, `[gcs] endpoint`), ending in `/`.
    pub endpoint: Option<String>,
    /// GDAL's `CPL_GS_ENDPOINT` from the environment, used when the settings name none.
    pub env_endpoint: Option<String>,
    /// `GS_NO_SIGN_REQUEST`: anonymous reads (sources) and an anonymous client (repositories).
    pub no_sign_request: bool,
}

/// The storage settings of this process: what the environment says, with the flags and the
/// config file over it. `Default` is an empty environment and no settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StorageSettings {
    /// `[s3]` and the `--s3-*` flags, for repositories; unset values fall back to [`Self::aws`]
    /// (see [`Self::repo_s3`]).
    pub s3: S3Settings,
    /// How a repository's storage client retries (`[storage_retries]`).
    pub retries: StorageRetries,
    /// The AWS variables: repositories fall back to them, `s3://` sources and places use them
    /// alone.
    pub aws: AwsEnv,
    pub gcs: GcsAccess,
    /// `TILECUBE_GDAL_CACHEMAX` as given, checked (`None`: 64 MB).
    pub gdal_cachemax: Option<String>,
}

impl StorageSettings {
    /// The settings the process environment gives: the one read of it, by a face at start-up.
    pub fn from_env() -> Result<Self, StorageSettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The settings the variables `var` looks up give (`None`: unset).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, StorageSettingsError> {
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let flag = |k: &'static str| -> Result<bool, StorageSettingsError> {
            match set(k) {
                None => Ok(false),
                Some(v) => parse_bool(&v).ok_or(StorageSettingsError::Flag { var: k, value: v }),
            }
        };
        let endpoint = |k: &'static str| -> Result<Option<String>, StorageSettingsError> {
            match set(k) {
                Some(v) => match endpoint_problem(&v) {
                    Some(reason) => Err(StorageSettingsError::Endpoint {
                        var: k,
                        value: v,
                        reason,
                    }),
                    None => Ok(Some(v)),
                },
                None => Ok(None),
            }
        };
        let aws_endpoint = match endpoint("AWS_ENDPOINT_URL_S3")? {
            Some(v) => Some(v),
            None => endpoint("AWS_ENDPOINT_URL")?,
        };
        let gcs_env_endpoint = endpoint("CPL_GS_ENDPOINT")?;
        let gdal_cachemax = var("TILECUBE_GDAL_CACHEMAX");
        if let Some(v) = &gdal_cachemax {
            check_gdal_cachemax(v)?;
        }
        Ok(Self {
            s3: S3Settings::default(),
            retries: StorageRetries::default(),
            aws: AwsEnv {
                endpoint_url: aws_endpoint,
                region: set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")),
                no_sign_request: flag("AWS_NO_SIGN_REQUEST")?,
                gdal_s3_endpoint_set: var("AWS_S3_ENDPOINT").is_some(),
            },
            gcs: GcsAccess {
                endpoint: None,
                env_endpoint: gcs_env_endpoint,
                no_sign_request: flag("GS_NO_SIGN_REQUEST")?,
            },
            gdal_cachemax,
        })
    }

    /// These settings with the flags' and config file's over the environment's: a
    /// repository's S3 settings, the GCS endpoint (if any) and the retries. Earlier ones are
    /// replaced, so laying the same over again changes nothing.
    pub fn with_config(
        mut self,
        s3: &S3Settings,
        gcs_endpoint: Option<&str>,
        retries: StorageRetries,
    ) -> Self {
        self.s3 = s3.clone();
        self.gcs.endpoint = gcs_endpoint.map(|e| format!("{}/", e.trim_end_matches('/')));
        self.retries = retries;
        self
    }

    /// A repository's S3 settings: the flags' and config file's, the environment's endpoint
    /// and region where they set none.
    pub fn repo_s3(&self) -> S3Settings {
        S3Settings {
            endpoint_url: self
                .s3
                .endpoint_url
                .clone()
                .or_else(|| self.aws.endpoint_url.clone()),
            region: self.s3.region.clone().or_else(|| self.aws.region.clone()),
            ..self.s3.clone()
        }
    }

    /// The GCS endpoint in force: the settings', else `CPL_GS_ENDPOINT` (else Google's).
    pub fn gcs_endpoint(&self) -> Option<&str> {
        self.gcs
            .endpoint
            .as_deref()
            .or(self.gcs.env_endpoint.as_deref())
    }
}

/// `TILECUBE_GDAL_CACHEMAX` checked: megabytes (a whole number below 100 000, which GDAL
/// would read as bytes) or a share of the machine's memory (`N%`, N at most 100); anything
/// else is an error, as GDAL would silently read it as no cache at all, or as another size.
fn check_gdal_cachemax(value: &str) -> Result<(), StorageSettingsError> {
    let v = value.trim();
    let ok = match v.strip_suffix('%') {
        Some(p) => {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 100)
        }
        None => {
            v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u32>().is_ok_and(|n| n < 100_000)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(StorageSettingsError::GdalCacheMax {
            value: value.to_string(),
        })
    }
}

/// A URL as shown: any user or password before its host replaced by `…`.
fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{}", &rest[host_end..]),
        None => url.to_string(),
    }
}

fn shown_opt(url: &Option<String>) -> Option<String> {
    url.as_deref().map(shown)
}

/// [`S3Settings`] as [`StorageSettings`]' `Debug` shows it.
struct S3View<'a>(&'a S3Settings);

impl fmt::Debug for S3View<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("region", &self.0.region)
            .field("endpoint_url", &shown_opt(&self.0.endpoint_url))
            .field("path_style", &self.0.path_style)
            .field("anonymous", &self.0.anonymous)
            .finish()
    }
}

impl fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsEnv")
            .field("endpoint_url", &shown_opt(&self.endpoint_url))
            .field("region", &self.region)
            .field("no_sign_request", &self.no_sign_request)
            .field("gdal_s3_endpoint_set", &self.gdal_s3_endpoint_set)
            .finish()
    }
}

impl fmt::Debug for GcsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsAccess")
            .field("endpoint", &shown_opt(&self.endpoint))
            .field("env_endpoint", &shown_opt(&self.env_endpoint))
            .field("no_sign_request", &self.no_sign_request)
            .finish()
    }
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSettings")
            .field("s3", &S3View(&self.s3))
            .field("retries", &self.retries)
            .field("aws", &self.aws)
            .field("gcs", &self.gcs)
            .field("gdal_cachemax", &self.gdal_cachemax)
            .finish()
    }
}

/// A lookup of variables from `pairs`, standing in for the environment in tests.
#[cfg(test)]
pub(crate) fn lookup_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        lookup_of(pairs)
    }

    #[test]
    fn yes_and_no_are_read_one_way() {
        for yes in ["yes", "YES", "True", "on", "1", " yes "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes:?}");
        }
        for no in ["no", "NO", "false", "Off", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no:?}");
        }
        for other in ["", "y", "maybe", "2", "enabled"] {
            assert_eq!(parse_bool(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_environment_gives_the_settings() {
        let s = StorageSettings::from_lookup(env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_NO_SIGN_REQUEST", "YES"),
            ("CPL_GS_ENDPOINT", "http://127.0.0.1:8000/"),
            ("GS_NO_SIGN_REQUEST", "true"),
            ("TILECUBE_GDAL_CACHEMAX", "5%"),
        ]))
        .unwrap();
        assert_eq!(s.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.aws.region.as_deref(), Some("eu-west-1"));
        assert!(s.aws.no_sign_request && s.gcs.no_sign_request);
        assert!(!s.aws.gdal_s3_endpoint_set);
        assert_eq!(s.gcs_endpoint(), Some("http://127.0.0.1:8000/"));
        assert_eq!(s.gdal_cachemax.as_deref(), Some("5%"));

        // The S3-specific endpoint and AWS_REGION come first; empty is unset.
        let s = StorageSettings::from_lookup(env(&[
            ("AWS_ENDPOINT_URL_S3", "http://s3.local"),
            ("AWS_ENDPOINT_URL", "http://other"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_NO_SIGN_REQUEST", ""),
            ("AWS_S3_ENDPOINT", "gdal.local"),
        ]))
        .unwrap();
        assert_eq!(s.aws.endpoint_url.as_deref(), Some("http://s3.local"));
        assert_eq!(s.aws.region.as_deref(), Some("us-west-2"));
        assert!(!s.aws.no_sign_request && !s.gcs.no_sign_request);
        assert!(s.aws.gdal_s3_endpoint_set);
        assert_eq!(s.gcs_endpoint(), None);

        assert_eq!(
            StorageSettings::from_lookup(|_| None).unwrap(),
            StorageSettings::default()
        );
    }

    #[test]
    fn the_settings_lie_over_the_environment() {
        let s = StorageSettings::from_lookup(env(&[
            ("AWS_ENDPOINT_URL", "http://env:9000"),
            ("AWS_REGION", "eu-west-1"),
            ("CPL_GS_ENDPOINT", "http://env-gcs/"),
        ]))
        .unwrap();
        assert_eq!(
            s.repo_s3().endpoint_url.as_deref(),
            Some("http://env:9000"),
            "the environment fills what the settings leave"
        );
        let s3 = S3Settings {
            endpoint_url: Some("http://flag:9000".into()),
            path_style: Some(false),
            ..Default::default()
        };
        let retries = StorageRetries {
            tries: std::num::NonZeroU16::new(3),
            ..Default::default()
        };
        let c = s.clone().with_config(&s3, Some("http://flag-gcs"), retries);
        let repo = c.repo_s3();
        assert_eq!(repo.endpoint_url.as_deref(), Some("http://flag:9000"));
        assert_eq!(repo.region.as_deref(), Some("eu-west-1"));
        assert_eq!(repo.path_style, Some(false));
        assert_eq!(c.gcs_endpoint(), Some("http://flag-gcs/"));
        assert_eq!(c.retries, retries);
        // Sources keep the environment's endpoint.
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://env:9000"));
        // Laying the same settings over again changes nothing.
        assert_eq!(
            c.clone()
                .with_config(&s3, Some("http://flag-gcs/"), retries),
            c
        );
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let e = StorageSettings::from_lookup(env(&[("GS_NO_SIGN_REQUEST", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("GS_NO_SIGN_REQUEST=\"maybe\""), "{e}");
        let e = StorageSettings::from_lookup(env(&[("AWS_NO_SIGN_REQUEST", "y")])).unwrap_err();
        assert_eq!(
            e,
            StorageSettingsError::Flag {
                var: "AWS_NO_SIGN_REQUEST",
                value: "y".into()
            }
        );
        for bad in ["", "64MB", "100000", "-1", "101%", "%", "1.5"] {
            let e = StorageSettings::from_lookup(env(&[("TILECUBE_GDAL_CACHEMAX", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("TILECUBE_GDAL_CACHEMAX={bad:?}: expected")),
                "{e}"
            );
        }
        for good in ["64", " 512 ", "5%", "100%", "0"] {
            assert!(
                StorageSettings::from_lookup(env(&[("TILECUBE_GDAL_CACHEMAX", good)])).is_ok(),
                "{good:?}"
            );
        }
    }

    #[test]
    fn a_mistyped_endpoint_is_named_with_its_variable() {
        for bad in [
            "not a url",
            "127.0.0.1:5555",
            "http://127.0.0.1:99999",
            "ftp://x",
        ] {
            let e = StorageSettings::from_lookup(env(&[("AWS_ENDPOINT_URL", bad)])).unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "AWS_ENDPOINT_URL={bad:?} is not an endpoint URL: "
                )),
                "{text}"
            );
            let e = StorageSettings::from_lookup(env(&[("CPL_GS_ENDPOINT", bad)])).unwrap_err();
            assert!(e.to_string().starts_with("CPL_GS_ENDPOINT="), "{e}");
        }
        assert!(endpoint_problem("ftp://x").unwrap().contains("\"ftp\""));
        assert_eq!(endpoint_problem("http://127.0.0.1:5555"), None);
        assert_eq!(endpoint_problem("https://s3.example.org/"), None);
        // Empty is unset, as for every variable here.
        let s = StorageSettings::from_lookup(env(&[("AWS_ENDPOINT_URL", "")])).unwrap();
        assert_eq!(s.aws.endpoint_url, None);
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = StorageSettings::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret"),
            ("AWS_SESSION_TOKEN", "session-token-secret"),
            ("AWS_ENDPOINT_URL", "http://user:hunter2@127.0.0.1:9000/x"),
            ("CPL_GS_ENDPOINT", "https://u:gcs-pass@gcs.local/"),
        ]))
        .unwrap()
        .with_config(
            &S3Settings {
                endpoint_url: Some("https://k:flag-pass@s3.local".into()),
                ..Default::default()
            },
            None,
            StorageRetries::default(),
        );
        let shown = format!("{s:?} {s:#?}");
        for secret in [
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI-secret",
            "session-token-secret",
            "hunter2",
            "gcs-pass",
            "flag-pass",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert!(shown.contains("http://…@127.0.0.1:9000/x"), "{shown}");
        assert!(shown.contains("https://…@s3.local"), "{shown}");
    }
}
