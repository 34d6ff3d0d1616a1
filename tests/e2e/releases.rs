//! Releases: `tilecube tag` names a snapshot for good, `log` shows the tags (and `log
//! --json` lists them per commit), and `write --message` gives a write's commits the
//! operator's message while each still records its own tiles — in the foreground and as a
//! plan's shard (a detached run passes `--message` to its worker as it passes `--threads`).
//! A tag's message (release notes) is kept in a spec-2 repository's metadata and shown by
//! `log`; a spec-1 repository refuses it before tagging; names a shell or Icechunk would choke
//! on are refused by name, with the reason.

use crate::common;

use common::{Work, tile_names};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn log(w: &Work) -> Vec<serde_json::Value> {
    json(&w.ok(&["log", "--json"]))
        .as_array()
        .expect("commits")
        .clone()
}

#[test]
fn tags_name_snapshots_for_good_and_log_shows_them() {
    let w = Work::new();
    let names = tile_names(3);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    let first = log(&w)[0]["id"].as_str().unwrap().to_string();
    w.ok(&["write", "--year", "2000", "--tiles", &names[1..].join(",")]);
    let head = log(&w)[0]["id"].as_str().unwrap().to_string();

    // The head by default, an older snapshot by --snapshot; two names on one snapshot.
    assert_eq!(
        w.ok(&["tag", "v1.0"]).trim(),
        format!("tagged {head} as v1.0")
    );
    w.ok(&["tag", "v0.9", "--snapshot", &first]);
    w.ok(&["tag", "latest-reviewed", "--snapshot", &head]);
    let commits = log(&w);
    assert_eq!(
        commits[0]["tags"],
        serde_json::json!(["latest-reviewed", "v1.0"])
    );
    assert_eq!(commits[1]["tags"], serde_json::json!(["v0.9"]));
    assert!(
        commits[2..]
            .iter()
            .all(|c| c["tags"] == serde_json::json!([]))
    );
    let text = w.ok(&["log"]);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(
        line(&head).contains("(tag: latest-reviewed, v1.0)"),
        "{text}"
    );
    assert!(line(&first).contains("(tag: v0.9)"), "{text}");

    // A tag names one snapshot for good: the same name again is refused, naming where it is.
    let again = w.run(&["tag", "v0.9"]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains(&format!(
            "tag v0.9 is already there, on snapshot {first}: a tag names one snapshot for good"
        )),
        "{err}"
    );
    // A snapshot that is not there is named.
    let bad = w.run(&["tag", "v2", "--snapshot", "0000000000000000000G"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("tagging snapshot 0000000000000000000G as v2"),
        "{err}"
    );
    assert_eq!(log(&w).len(), commits.len(), "no commit made by tagging");
}

#[test]
fn a_tags_message_is_kept_and_odd_names_are_refused_before_anything_is_written() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init", "--spec-version", "2"]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    let head = log(&w)[0]["id"].as_str().unwrap().to_string();
    let notes = "GLAD v2.0: all five years, tiles as published";
    assert_eq!(
        w.ok(&["tag", "v2.0", "--message", notes]).trim(),
        format!("tagged {head} as v2.0")
    );
    // A tag without a message sits beside it; log shows both, the message quoted.
    w.ok(&["tag", "reviewed"]);
    let text = w.ok(&["log"]);
    assert!(
        text.contains(&format!("(tag: reviewed, v2.0: {notes:?})")),
        "{text}"
    );
    let c = &log(&w)[0];
    assert_eq!(c["tags"], serde_json::json!(["reviewed", "v2.0"]));
    assert_eq!(c["tag_messages"], serde_json::json!({ "v2.0": notes }));
    // The same name on the same snapshot: the message is replaced (or nothing to do).
    assert_eq!(
        w.ok(&["tag", "v2.0", "--message", "GLAD v2.0 (notes fixed)"])
            .trim(),
        format!("tag v2.0 (on {head}): message set")
    );
    assert_eq!(
        log(&w)[0]["tag_messages"]["v2.0"],
        "GLAD v2.0 (notes fixed)"
    );
    assert!(w.ok(&["tag", "reviewed"]).contains("already names"));

    // Names refused by name and reason, and nothing tagged.
    for (bad, why) in [
        ("first release", "no spaces"),
        ("v1/rc", "slashes"),
        ("_v1", "start with a letter or a digit"),
        ("v1..2", "'..'"),
    ] {
        let out = w.run(&["tag", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("tag name {bad:?} is refused")) && err.contains(why),
            "{bad}: {err}"
        );
    }
    assert_eq!(log(&w)[0]["tags"], serde_json::json!(["reviewed", "v2.0"]));

    // A spec-1 repository has no metadata of its own: a message is refused, no tag made.
    let w1 = Work::new();
    w1.listed_tiles(2000, &names);
    w1.ok(&["init", "--spec-version", "1"]);
    w1.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    let out = w1.run(&["tag", "v1.0", "--message", "notes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a tag's message is kept in the repository's own metadata, which a spec-1 repository does not have"),
        "{err}"
    );
    assert_eq!(log(&w1)[0]["tags"], serde_json::json!([]), "no tag made");
    w1.ok(&["tag", "v1.0"]);
    assert_eq!(log(&w1)[0]["tags"], serde_json::json!(["v1.0"]));
}

#[test]
fn a_writes_message_names_its_commits_and_each_still_records_its_tiles() {
    let w = Work::new();
    let names = tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let m = "write GLAD LCLU data";
    w.ok(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        &names[..4].join(","),
        "--commit-every",
        "2",
        "--threads",
        "1",
        "--message",
        m,
    ]);
    let commits = log(&w);
    let ours: Vec<&serde_json::Value> = commits.iter().take(2).collect();
    for c in &ours {
        assert_eq!(c["message"], m, "{c}");
        assert_eq!(c["written"]["2000"].as_object().unwrap().len(), 2, "{c}");
    }
    let mut recorded: Vec<String> = w.written_by_commit(2000).into_iter().flatten().collect();
    recorded.sort();
    let mut want = names[..4].to_vec();
    want.sort();
    assert_eq!(recorded, want);

    // A plan's shard takes the message too; without one, a commit names its tiles.
    let p = w.dir.path().join("plan").display().to_string();
    w.ok(&[
        "plan",
        "--missing",
        "--year",
        "2000",
        "--shards",
        "1",
        "--out",
        &p,
    ]);
    w.ok(&[
        "write",
        "--plan",
        &p,
        "--shard",
        "0",
        "--message",
        "shard of the 2000 fix",
    ]);
    assert_eq!(log(&w)[0]["message"], "shard of the 2000 fix");
    w.tile(2000, &names[5], tilecube::demo::Flaw::None);
    w.ok(&["write", "--year", "2000", "--tiles", &names[5]]);
    let last = &log(&w)[0];
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .starts_with("write 1 tile: 2000/"),
        "{last}"
    );
}

#[test]
fn tags_made_at_once_keep_every_message_and_tags_an_expire_keeps_stay_in_the_log() {
    let w = Work::new();
    let names = tile_names(2);
    w.listed_tiles(2000, &names);
    w.ok(&["init", "--spec-version", "2"]);
    w.ok(&["write", "--year", "2000", "--tiles", &names[0]]);
    let first = log(&w)[0]["id"].as_str().unwrap().to_string();
    // Eight taggers at once on a local repository: each message is kept (they take turns
    // at the repository's metadata, as commits take turns at the branch).
    let taggers: Vec<_> = (0..8)
        .map(|i| {
            let (name, message) = (format!("m{i}"), format!("notes {i}"));
            w.spawn_with(&["tag", &name, "--message", &message], &[])
        })
        .collect();
    for t in taggers {
        let out = t.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let messages = log(&w)[0]["tag_messages"].clone();
    for i in 0..8 {
        assert_eq!(
            messages[format!("m{i}")],
            format!("notes {i}"),
            "{messages}"
        );
    }

    // A mistyped id that Icechunk would read as the snapshot's is refused, naming the id.
    let last = first.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &first[..first.len() - 1],
        if last == '0' { '1' } else { 'H' }
    );
    let out = w.run(&["tag", "typo", "--snapshot", &typo]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("it reads as {first}")),
        "{typo}: {err}"
    );
    let out = w.run(&["tag", "short", "--snapshot", &first[..8]]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a snapshot id is 20 characters"),
        "{out:?}"
    );
    assert!(!log(&w)[0]["tags"].to_string().contains("typo"));

    // An empty message is refused; one with line breaks and escapes stays on its line.
    let out = w.run(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        &names[1],
        "--message",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("an empty message"));
    w.ok(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        &names[1],
        "--message",
        "line one\nline two \u{1b}[31m",
    ]);
    let text = w.ok(&["log"]);
    assert!(
        text.contains("line one\\nline two \\u{1b}[31m") && !text.contains('\u{1b}'),
        "{text}"
    );

    // An expire drops the tagged snapshot from the branch's history but keeps it: log
    // shows it after the history, with its tags and their messages.
    w.ok(&["expire", "--older-than", "0s"]);
    let commits = log(&w);
    let off: Vec<_> = commits
        .iter()
        .filter(|c| c["in_history"] == false)
        .collect();
    assert_eq!(off.len(), 1, "{commits:?}");
    assert_eq!(off[0]["id"], first.as_str());
    assert_eq!(off[0]["tag_messages"]["m3"], "notes 3");
    let text = w.ok(&["log"]);
    let (history, kept) = text
        .split_once("tagged snapshots no longer in main's history")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!history.contains(&first), "{text}");
    assert!(
        kept.contains(&first) && kept.contains("m0: \"notes 0\""),
        "{text}"
    );
}
