//! Which shard a task writes: its index, read from the variables each batch scheduler sets
//! on the tasks of an array.
//!
//! Invariant: the first scheduler variable set decides; a value that is not a number, or an
//! index outside the plan, is an error naming the variable — never a guess.

use super::ScaleError;

/// The schedulers whose array tasks are recognised: (name, index variable, count variable).
pub const SCHEDULERS: &[(&str, &str, Option<&str>)] = &[
    (
        "Slurm",
        "SLURM_ARRAY_TASK_ID",
        Some("SLURM_ARRAY_TASK_COUNT"),
    ),
    ("Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", None),
    (
        "AWS Batch",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        Some("AWS_BATCH_JOB_ARRAY_SIZE"),
    ),
    (
        "Google Cloud Batch",
        "BATCH_TASK_INDEX",
        Some("BATCH_TASK_COUNT"),
    ),
    (
        "Cloud Run jobs",
        "CLOUD_RUN_TASK_INDEX",
        Some("CLOUD_RUN_TASK_COUNT"),
    ),
    ("Coiled Batch", "COILED_BATCH_TASK_ID", None),
];

/// A task's shard and where its index came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIndex {
    pub index: usize,
    /// "SLURM_ARRAY_TASK_ID=2 (Slurm)", or "--shard 2".
    pub origin: String,
    /// The array's size, when the scheduler says it.
    pub count: Option<usize>,
    /// The scheduler's name, if one gave the index.
    pub scheduler: Option<&'static str>,
}

impl TaskIndex {
    /// The shard of a task: `spec` is `auto` (from the scheduler variables, read through
    /// `var`) or a number; checked against the plan's `shards`.
    pub fn resolve(
        spec: &str,
        shards: usize,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ScaleError> {
        let found = if spec.trim() == "auto" {
            Self::from_scheduler(&var)?
        } else {
            let index = spec
                .trim()
                .parse::<usize>()
                .map_err(|_| ScaleError::BadShard {
                    spec: spec.to_string(),
                })?;
            Self {
                index,
                origin: format!("--shard {index}"),
                count: None,
                scheduler: None,
            }
        };
        if found.index >= shards {
            return Err(ScaleError::OutOfRange {
                index: found.index,
                origin: found.origin,
                shards,
            });
        }
        Ok(found)
    }

    /// The index from the first scheduler variable that is set.
    fn from_scheduler(var: &impl Fn(&str) -> Option<String>) -> Result<Self, ScaleError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        for (scheduler, index_var, count_var) in SCHEDULERS {
            let Some(value) = get(index_var) else {
                continue;
            };
            let index = value
                .parse::<usize>()
                .map_err(|_| ScaleError::BadTaskIndex {
                    var: index_var,
                    value: value.clone(),
                })?;
            let count = count_var.and_then(&get).and_then(|v| v.parse().ok());
            return Ok(Self {
                index,
                origin: format!("{index_var}={value} ({scheduler})"),
                count,
                scheduler: Some(scheduler),
            });
        }
        Err(ScaleError::NoIndex {
            vars: SCHEDULERS
                .iter()
                .map(|(_, v, _)| *v)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_settings::lookup_of as env;

    #[test]
    fn every_schedulers_variables_select_the_same_shard() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            &[("JOB_COMPLETION_INDEX", "2")],
            &[
                ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
                ("AWS_BATCH_JOB_ARRAY_SIZE", "4"),
            ],
            &[("BATCH_TASK_INDEX", "2"), ("BATCH_TASK_COUNT", "4")],
            &[("CLOUD_RUN_TASK_INDEX", "2"), ("CLOUD_RUN_TASK_COUNT", "4")],
            &[("COILED_BATCH_TASK_ID", "2")],
        ];
        for (case, (scheduler, var, count)) in cases.iter().zip(SCHEDULERS) {
            let t = TaskIndex::resolve("auto", 4, env(case)).unwrap();
            assert_eq!(t.index, 2, "{case:?}");
            assert_eq!(t.scheduler, Some(*scheduler));
            assert!(t.origin.starts_with(&format!("{var}=2")), "{}", t.origin);
            assert_eq!(t.count, count.map(|_| 4), "{case:?}");
        }
        assert_eq!(TaskIndex::resolve("3", 4, env(&[])).unwrap().index, 3);
    }

    #[test]
    fn a_missing_bad_or_out_of_range_index_is_an_error_naming_it() {
        let e = TaskIndex::resolve("auto", 4, env(&[]))
            .unwrap_err()
            .to_string();
        for (_, var, _) in SCHEDULERS {
            assert!(e.contains(var), "{e}");
        }
        let e = TaskIndex::resolve("auto", 4, env(&[("JOB_COMPLETION_INDEX", "x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX=x"), "{e}");
        let e = TaskIndex::resolve("auto", 4, env(&[("SLURM_ARRAY_TASK_ID", "4")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SLURM_ARRAY_TASK_ID=4") && e.contains("4 shards"),
            "{e}"
        );
        assert!(TaskIndex::resolve("-1", 4, env(&[])).is_err());
        assert!(
            TaskIndex::resolve("7", 4, env(&[]))
                .unwrap_err()
                .to_string()
                .contains("--shard 7")
        );
    }
}
