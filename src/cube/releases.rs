//! Releases: a tag names a snapshot for good, and may carry a message (release notes).
//!
//! Invariants:
//! - a tag name is one an operator can type in any shell and Icechunk stores as a file
//!   name: ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most
//!   [`MAX_TAG_LEN`] characters, no `..`; anything else is refused with the reason before
//!   anything is written;
//! - a tag never moves: tagging a name already on another snapshot is refused;
//! - Icechunk's tags carry no message, so a release's message is kept in the repository's
//!   own metadata (`tilecube.release.NAME`: message and time), which spec-2 repositories
//!   have; on a spec-1 repository `--message` is refused before the tag is made. A message
//!   whose tag does not exist is never shown.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use icechunk::format::SnapshotId;
use icechunk::format::format_constants::SpecVersionBin;
use serde_json::{Value, json};

use super::{Cube, CubeError};

/// The longest tag name taken.
pub const MAX_TAG_LEN: usize = 100;

/// The repository metadata key of a release's message.
fn message_key(name: &str) -> String {
    format!("tilecube.release.{name}")
}

/// Why a tag name is refused, if it is.
pub fn tag_name_problem(name: &str) -> Option<&'static str> {
    let first = name.chars().next()?;
    if name.len() > MAX_TAG_LEN {
        return Some("it is longer than 100 characters");
    }
    if !name.is_ascii() {
        return Some(
            "only ASCII letters, digits, '.', '_' and '-' are taken (it holds a letter outside ASCII)",
        );
    }
    if !first.is_ascii_alphanumeric() {
        return Some("it must start with a letter or a digit");
    }
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(
            "only letters, digits, '.', '_' and '-' are taken (no spaces, slashes or quotes)",
        );
    }
    if name.contains("..") || name.ends_with('.') {
        return Some("it must not hold '..' or end with '.'");
    }
    None
}

/// Check a tag name, as [`Cube::release`] does before writing anything.
pub fn check_tag_name(name: &str) -> Result<(), CubeError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else {
        tag_name_problem(name)
    };
    match why {
        Some(why) => Err(CubeError::TagName {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// A tag and what it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    pub name: String,
    pub snapshot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
}

/// What [`Cube::release`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The tag was made.
    Tagged,
    /// The tag was already on that snapshot; its message was set.
    MessageSet,
    /// The tag was already on that snapshot, and no message was given: nothing to do.
    AlreadyThere,
}

impl Cube {
    /// Whether the repository keeps metadata of its own (spec 2), where messages live.
    fn keeps_messages(&self) -> bool {
        self.repo.spec_version() >= SpecVersionBin::V2
    }

    /// Tag `snapshot` as `name`, with an optional message. The name is checked first; a
    /// name on another snapshot is refused; the same name on the same snapshot only sets the
    /// message.
    pub async fn release(
        &self,
        name: &str,
        snapshot: &SnapshotId,
        message: Option<&str>,
    ) -> Result<Released, CubeError> {
        check_tag_name(name)?;
        if message.is_some() && !self.keeps_messages() {
            return Err(CubeError::NoRepositoryMetadata {
                what: "a tag's message",
            });
        }
        let existing = self.releases().await?;
        let outcome = match existing.iter().find(|r| r.name == name) {
            Some(r) if r.snapshot != snapshot.to_string() => {
                return Err(CubeError::TagTaken {
                    name: name.to_string(),
                    snapshot: r.snapshot.clone(),
                });
            }
            Some(_) if message.is_none() => return Ok(Released::AlreadyThere),
            Some(_) => Released::MessageSet,
            None => {
                self.create_tag(name, snapshot).await?;
                Released::Tagged
            }
        };
        if let Some(message) = message {
            let mut props = icechunk::format::snapshot::SnapshotProperties::new();
            props.insert(
                message_key(name),
                json!({ "message": message, "time": Utc::now() }),
            );
            // The repository's metadata lives in the file the references live in (spec 2):
            // on a local repository, which has no conditional writes, two taggers at once
            // would each write it from what they read, the later dropping the other's
            // message. The reference lock makes them take turns, as commits do.
            let _lock = super::lock::RefLock::acquire(&self.location).await?;
            self.repo
                .update_metadata(&props)
                .await
                .map_err(|e| {
                    CubeError::icechunk(
                        format!("tag {name} is on snapshot {snapshot}, but storing its message failed (run the same command again to store it)"),
                        e,
                    )
                })?;
        }
        Ok(outcome)
    }

    /// Delete tag `name` (the snapshot it named stays while a branch or another tag reaches
    /// it; `gc` then reclaims what it alone held). Under the reference lock. Returns the
    /// snapshot it named.
    pub async fn delete_release(&self, name: &str) -> Result<String, CubeError> {
        let Some(r) = self.releases().await?.into_iter().find(|r| r.name == name) else {
            let names: Vec<String> = self.releases().await?.into_iter().map(|r| r.name).collect();
            return Err(CubeError::NoSuchTag {
                name: name.to_string(),
                tags: if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                },
            });
        };
        let _lock = super::lock::RefLock::acquire(&self.location).await?;
        self.repo
            .delete_tag(name)
            .await
            .map_err(|e| CubeError::icechunk(format!("deleting tag {name}"), e))?;
        Ok(r.snapshot)
    }

    /// The repository's tags, by name, each with its snapshot and message (if any).
    pub async fn releases(&self) -> Result<Vec<Release>, CubeError> {
        let by_snapshot = self.tags().await?;
        let metadata: BTreeMap<String, Value> = if self.keeps_messages() && !by_snapshot.is_empty()
        {
            self.repo
                .get_metadata()
                .await
                .map_err(|e| CubeError::icechunk("reading the repository's metadata", e))?
        } else {
            BTreeMap::new()
        };
        let mut out: Vec<Release> = by_snapshot
            .into_iter()
            .flat_map(|(snapshot, names)| {
                names.into_iter().map(move |name| (snapshot.clone(), name))
            })
            .map(|(snapshot, name)| {
                let note = metadata.get(&message_key(&name));
                Release {
                    message: note
                        .and_then(|n| n.get("message"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    time: note
                        .and_then(|n| n.get("time"))
                        .and_then(|t| serde_json::from_value(t.clone()).ok()),
                    name,
                    snapshot,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_an_operator_can_type_are_taken() {
        for ok in ["v1.0", "v2.1-rc1", "glad_2020", "2026-12-01", "A"] {
            assert_eq!(tag_name_problem(ok), None, "{ok}");
            assert!(check_tag_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn other_names_are_refused_with_the_reason() {
        for (bad, why) in [
            ("first release", "no spaces"),
            ("v1/rc", "slashes"),
            ("-v1", "start with a letter"),
            (".hidden", "start with a letter"),
            ("v1..2", "'..'"),
            ("v1.", "end with '.'"),
            ("it's", "quotes"),
            ("é", "outside ASCII"),
            ("über", "outside ASCII"),
        ] {
            let e = check_tag_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(&format!("{bad:?}")), "{bad}: names it: {e}");
        }
        assert!(
            check_tag_name("")
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let long = "v".repeat(MAX_TAG_LEN + 1);
        assert!(
            check_tag_name(&long)
                .unwrap_err()
                .to_string()
                .contains("100")
        );
        assert!(check_tag_name(&"v".repeat(MAX_TAG_LEN)).is_ok());
    }
}
