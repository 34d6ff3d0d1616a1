//! Promises of the README held one by one: each test breaks when its promise does. A tile
//! named twice is written once; a failed rewrite leaves the tile as written before, and
//! `status` says so; plain `tilecube` opens the console on a terminal and prints the status
//! in a pipe; the scheduler recipes parse and name only commands and flags that exist; a
//! bucket that denies writes makes `write` exit 2; an S3 try gives up at its connect and
//! answer limits; the console keeps a tile's last failure during its retry and `L` holds a
//! run's last 2,000 log lines; a run's record is rewritten about once a second, and `runs`
//! says when a worker stopped progressing.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tmux::Tmux;
use common::{Work, cube_pixels, gdal_pixels, t};
use tilecube::demo::Flaw;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The tiles of `year` the branch's commits recorded, each with how many commits did.
fn recorded(w: &Work, year: i32) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for tiles in w.written_by_commit(year) {
        for t in tiles {
            *out.entry(t).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_named_twice_is_written_once() {
    let w = Work::new();
    let names = ["00N_000E".to_string(), "00N_010E".to_string()];
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    // Named three times, once with spaces around it; a pipe gets a line per tile.
    let o = w.run(&[
        "write",
        "--year",
        "2000",
        "--tiles",
        "00N_000E,00N_010E, 00N_000E ,00N_000E",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let lines_of = |tile: &str| {
        out.lines()
            .filter(|l| l.contains(&format!("2000/{tile}:")))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines_of("00N_000E").len(),
        1,
        "one line for the tile:\n{out}"
    );
    assert_eq!(lines_of("00N_010E").len(), 1, "{out}");
    assert!(out.contains("writing 2 tiles"), "{out}");
    assert!(out.contains("2 tiles written"), "{out}");
    // One commit, recording each tile once, and its message naming each once.
    let log = json(&w.ok(&["log", "--json"]));
    let commits = log.as_array().expect("commits");
    assert_eq!(
        commits.len(),
        3,
        "the repository's first commit, the layout's and the write's: {log}"
    );
    let message = commits[0]["message"].as_str().expect("message");
    assert_eq!(message.matches("2000/00N_000E").count(), 1, "{message}");
    assert_eq!(
        recorded(&w, 2000),
        BTreeMap::from([("00N_000E".to_string(), 1), ("00N_010E".to_string(), 1)])
    );
    // Its chunks were uploaded once: the repository holds as many chunk objects as a cube
    // that was given each tile once.
    let once = Work::new();
    once.listed_tiles(2000, &names);
    once.ok(&["init"]);
    once.ok(&["write", "--year", "2000", "--tiles", "00N_000E,00N_010E"]);
    let chunks = |w: &Work| walk(&w.repo().join("chunks")).len();
    assert!(chunks(&once) > 0);
    assert_eq!(chunks(&w), chunks(&once), "chunk objects uploaded");
    let cube = w.cube().await;
    for n in &names {
        let src = gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t(n)));
        assert!(cube_pixels(&cube, 2000, t(n)).await == src, "{n} differs");
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// The status grid's row of `lat` ("00N"): its glyphs by column.
fn status_row(status: &str, year: i32, lat: &str) -> Vec<char> {
    let from = status
        .find(&format!("\n{year}: "))
        .unwrap_or_else(|| panic!("no {year} grid in:\n{status}"));
    let line = status[from..]
        .lines()
        .find(|l| l.starts_with(&format!("{lat}  ")))
        .unwrap_or_else(|| panic!("no row {lat}:\n{status}"));
    line[5..].chars().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_the_cube_keeps_a_tile_as_written_before_after_a_failed_rewrite() {
    let w = Work::new();
    // 00N_000E is written, then its source goes bad; 00N_010E was never written and fails.
    let names = ["00N_000E".to_string(), "00N_010E".to_string()];
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E"]);
    let good = gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t("00N_000E")));
    w.tile(2000, "00N_000E", Flaw::ThreeBands);
    w.tile(2000, "00N_010E", Flaw::Int16);
    let out = w.run(&["write", "--year", "2000", "--tiles", "00N_000E,00N_010E"]);
    assert_eq!(out.status.code(), Some(1), "tiles failed: {}", text(&out));

    let o = w.run(&["status", "--year", "2000"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    // Both show as failed in the grid (columns 18 and 19: 0°E and 10°E).
    let row = status_row(&status, 2000, "00N");
    assert_eq!((row[18], row[19]), ('!', '!'), "{status}");
    let line = |tile: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("failed: 2000/{tile}: ")))
            .unwrap_or_else(|| panic!("no failure line for {tile}:\n{status}"))
            .to_string()
    };
    let rewritten = line("00N_000E");
    assert!(rewritten.contains("has 3 bands"), "{rewritten}");
    assert!(
        rewritten.ends_with("; the cube keeps the tile as written before"),
        "{rewritten}"
    );
    let never = line("00N_010E");
    assert!(never.contains("int16"), "{never}");
    assert!(!never.contains("written before"), "{never}");
    // What it says is so: the head still holds the tile as first written, recorded once.
    let cube = w.cube().await;
    assert!(cube_pixels(&cube, 2000, t("00N_000E")).await == good);
    assert_eq!(
        recorded(&w, 2000),
        BTreeMap::from([("00N_000E".to_string(), 1)])
    );
    let j = json(&w.ok(&["status", "--json", "--year", "2000"]));
    assert_eq!(j["years"]["2000"]["written"], 1, "{j}");
}

#[test]
fn plain_tilecube_opens_the_console_on_a_terminal_and_prints_the_status_in_a_pipe() {
    let w = Work::new();
    w.listed_tiles(2000, &["80N_180W".to_string(), "80N_170W".to_string()]);
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "80N_180W"]);
    // In a pipe: the status grid, as `tilecube status` prints it.
    let piped = w.run(&[]);
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped));
    let said = String::from_utf8_lossy(&piped.stdout).into_owned();
    assert_eq!(status_row(&said, 2000, "80N")[..2], ['#', 'o'], "{said}");
    assert!(said.contains("2000: 1 written / 2 listed"), "{said}");
    assert!(
        !said.contains('\x1b'),
        "no terminal escapes in a pipe: {said:?}"
    );
    // With no repository configured, neither: the help.
    let bare = Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .env("TILECUBE_DATA_DIR", w.dir.path().join("data"))
        .env("XDG_CONFIG_HOME", w.dir.path().join("no-config"))
        .env("HOME", w.dir.path().join("no-home"))
        .output()
        .expect("run tilecube");
    let help = String::from_utf8_lossy(&bare.stdout);
    assert!(
        help.contains("Usage:") && !help.contains("written /"),
        "{help}"
    );
    // On a terminal: the console, on the same cube.
    let tmux = Tmux::start(&format!(
        "TILECUBE_DATA_DIR={} {} --config {}; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    ));
    let s = tmux.wait_for("1:2000 1/2");
    assert!(s.contains("80N # o "), "{s}");
    assert!(s.contains("? help") && s.contains("q quit"), "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

/// The scheduler recipes (`assets/deploy`): Kubernetes, AWS Batch and Coiled.
fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/deploy")
}

/// What the recipes' variables stand for in their usage lines.
const PLAN: &str = "s3://bucket/plans/glad";
const STAGE: &str = "s3://bucket/stage/glad";

/// A recipe's shell words with its variables given their usage values (`"$@"` is the
/// selection the usage lines pass: `--all`), quotes removed.
fn shell_words(text: &str) -> Vec<String> {
    let mut s = text.to_string();
    for (var, value) in [
        ("PLAN", PLAN),
        ("STAGE", STAGE),
        ("SHARDS", "200"),
        ("QUEUE", "tilecube"),
    ] {
        s = s
            .replace(&format!("${{{var}:?}}"), value)
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    s = s.replace("\"$@\"", "--all");
    assert!(!s.contains('$'), "a variable no usage line gives: {text}");
    s.replace(['"', '\''], "")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Every `tilecube …` invocation a text names, comments included: `tilecube` followed by
/// words up to the end of the command (line, backtick, `;`, `&&`, `|`), at least one of them
/// a flag (prose such as "tilecube on Kubernetes" names none).
fn invocations_in(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let mut out = vec![];
    for line in joined.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("tilecube ") {
            let before = rest[..at].chars().last();
            let after = &rest[at + "tilecube ".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || ['/', '-', '_', '='].contains(&c)) {
                continue;
            }
            let end = after
                .find(['`', ';', '|', '#'])
                .into_iter()
                .chain(after.find("&&"))
                .min()
                .unwrap_or(after.len());
            let words = shell_words(&after[..end]);
            if words.iter().any(|w| w.starts_with("--")) {
                out.push(words);
            }
        }
    }
    out
}

/// Whether the real binary's argument parser takes these words: with `--help` after them,
/// clap reads every one (an unknown subcommand or flag, or a value it cannot parse, is an
/// error) and prints the subcommand's help.
fn clap_takes(words: &[String]) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tilecube"))
        .args(words)
        .arg("--help")
        .output()
        .expect("run tilecube");
    let help = String::from_utf8_lossy(&o.stdout);
    if o.status.success() && help.contains(&format!("Usage: tilecube {}", words[0])) {
        Ok(())
    } else {
        Err(text(&o))
    }
}

#[test]
fn the_kubernetes_aws_batch_and_coiled_recipes_parse_and_name_real_commands_and_flags() {
    let dir = deploy();
    let mut commands: Vec<(String, Vec<String>)> = vec![];
    let mut read = 0;

    // Kubernetes: YAML as a YAML parser reads it; the container's args go to the image's
    // entrypoint, which is tilecube.
    let containerfile = std::fs::read_to_string(dir.join("Containerfile")).expect("Containerfile");
    assert!(
        containerfile.contains("ENTRYPOINT [\"tilecube\"]"),
        "{containerfile}"
    );
    for file in ["kubernetes/indexed-job.yaml", "kubernetes/merge-job.yaml"] {
        let path = dir.join(file);
        let o = Command::new(common::python())
            .args([
                "-c",
                "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            ])
            .arg(&path)
            .output()
            .expect("python");
        assert!(o.status.success(), "{file} does not parse: {}", text(&o));
        let docs = json(&String::from_utf8_lossy(&o.stdout));
        let docs = docs.as_array().expect("documents");
        assert_eq!(docs.len(), 1, "{file}");
        let job = &docs[0];
        assert_eq!(job["kind"], "Job", "{file}");
        for c in job["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
        {
            let args: Vec<String> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("an arg").to_string())
                .collect();
            commands.push((format!("{file} args"), args));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for words in invocations_in(&text) {
            commands.push((format!("{file} comment"), words));
        }
        read += 1;
    }
    // The Indexed Job runs as many pods as the plan in its usage line has shards.
    let indexed = std::fs::read_to_string(dir.join("kubernetes/indexed-job.yaml")).unwrap();
    assert!(
        indexed.contains("--shards 200") && indexed.contains("completions: 200"),
        "{indexed}"
    );

    // AWS Batch: the job definition as JSON; its command's `Ref::` parameters are those
    // the submit script passes.
    let def: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("aws-batch/job-definition.json")).unwrap(),
    )
    .expect("job-definition.json parses");
    let submit = std::fs::read_to_string(dir.join("aws-batch/submit.sh")).unwrap();
    let params: BTreeMap<String, String> = submit
        .split("--parameters \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("submit.sh passes --parameters")
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_string(), shell_words(v).concat())
        })
        .collect();
    let command: Vec<String> = def["containerProperties"]["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| {
            let a = a.as_str().expect("a word");
            match a.strip_prefix("Ref::") {
                Some(p) => params
                    .get(p)
                    .unwrap_or_else(|| panic!("Ref::{p} is not among {params:?}"))
                    .clone(),
                None => a.to_string(),
            }
        })
        .collect();
    commands.push(("job-definition.json command".into(), command));
    // The merge job overrides the command: `command=merge,--plan,…`.
    let overrides = submit
        .split("command=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the merge's command override");
    commands.push((
        "submit.sh merge override".into(),
        overrides.split(',').flat_map(shell_words).collect(),
    ));
    read += 1;

    // Shell scripts: bash reads them; their tilecube lines (comments too) are collected.
    for file in ["aws-batch/submit.sh", "coiled/run.sh", "coiled/shard.sh"] {
        let path = dir.join(file);
        let o = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash");
        assert!(o.status.success(), "{file}: {}", text(&o));
        let text = std::fs::read_to_string(&path).unwrap();
        for words in invocations_in(&text) {
            commands.push((file.to_string(), words));
        }
        read += 1;
    }
    assert_eq!(read, 6, "every recipe file read");

    // What each recipe runs, at least: shards written, staged, merged; a plan made.
    let ran = |sub: &str| commands.iter().filter(|(_, w)| w[0] == sub).count();
    assert!(
        ran("write") >= 3,
        "a shard command in each recipe: {commands:?}"
    );
    assert!(ran("merge") >= 3, "a merge in each recipe: {commands:?}");
    assert!(ran("plan") >= 3, "a plan in each recipe: {commands:?}");
    for (from, words) in &commands {
        if words[0] == "write" {
            assert!(
                words.windows(2).any(|p| p == ["--shard", "auto"]),
                "{from}: {words:?}"
            );
        }
        if let Err(e) = clap_takes(words) {
            panic!(
                "{from}: `tilecube {}` is not a command tilecube takes:\n{e}",
                words.join(" ")
            );
        }
    }
    // The check itself tells a flag that is not there, and a value that is not one.
    for bad in [
        vec!["write", "--plan", PLAN, "--shards", "auto"],
        vec!["write", "--plan", PLAN, "--threads", "eight"],
        vec!["submit", "--plan", PLAN],
    ] {
        let bad: Vec<String> = bad.into_iter().map(str::to_string).collect();
        assert!(clap_takes(&bad).is_err(), "{bad:?} was taken");
    }
}

/// Two users of the test server whose writes a bucket denies, the way IAM policies do:
/// `reader` may only read; `announcer` may also write a repository's write announcements
/// (`tilecube-writers/`) but no chunk, manifest or snapshot. Then the server is made to
/// check every request's signature and policy (moto's `reset-auth`). Returns each user's
/// key and secret.
fn denied_users(moto: &common::s3::Moto, repo_prefix: &str) -> [(String, String); 2] {
    let script = r#"
import sys, json, boto3, urllib.request
endpoint, prefix = sys.argv[1], sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="x", aws_secret_access_key="x")
read = {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
announce = {"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{prefix}/tilecube-writers/*"}
for user, statements in [("reader", [read]), ("announcer", [read, announce])]:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    print(key["AccessKeyId"], key["SecretAccessKey"])
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0",
    method="POST", headers={"Content-Type": "text/plain"})).read()
"#;
    let o = Command::new(common::python())
        .args(["-c", script, &moto.endpoint, repo_prefix])
        .output()
        .expect("python");
    assert!(o.status.success(), "IAM set-up: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let users: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (k, s) = l.trim().split_once(' ').expect("key and secret");
            (k.to_string(), s.to_string())
        })
        .collect();
    [users[0].clone(), users[1].clone()]
}

#[test]
fn a_bucket_that_denies_writes_makes_write_exit_2_naming_the_tile_and_the_denial() {
    let moto = common::s3::Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    let names = common::tile_names(8);
    w.listed_tiles(2000, &names);
    let repo = "s3://cubes/denied";
    let init = w.run_with(&["--repo", repo, "init"], &moto.env());
    assert!(init.status.success(), "{}", text(&init));
    let before = {
        let log = w.run_with(&["--repo", repo, "log", "--json"], &moto.env());
        json(&String::from_utf8_lossy(&log.stdout))
            .as_array()
            .map(Vec::len)
    };
    assert!(before.is_some_and(|n| n >= 1), "{before:?}");
    let [reader, announcer] = denied_users(&moto, "cubes/denied");
    let as_user = |(key, secret): &(String, String)| -> Vec<(&str, String)> {
        moto.env()
            .into_iter()
            .map(|(k, v)| match k {
                "AWS_ACCESS_KEY_ID" => (k, key.clone()),
                "AWS_SECRET_ACCESS_KEY" => (k, secret.clone()),
                _ => (k, v),
            })
            .collect()
    };
    let commits = |env: &[(&str, String)]| {
        let log = w.run_with(&["--repo", repo, "log", "--json"], env);
        assert!(log.status.success(), "{}", text(&log));
        json(&String::from_utf8_lossy(&log.stdout))
            .as_array()
            .map(Vec::len)
    };
    // The reader reads the cube: the denial is of writes only.
    assert_eq!(commits(&as_user(&reader)), before);

    // Chunks denied: the first chunk refused stops the write, naming its tile and the
    // storage's error; only the chunks already on their way meet the refusal too (one
    // thread: those of the few tiles the bounded channel holds), each such tile named
    // FAILED with the denial, the other tiles are not tried, nothing lands.
    let out = w.run_with(
        &[
            "--repo",
            repo,
            "write",
            "--all",
            "--year",
            "2000",
            "--threads",
            "1",
        ],
        &as_user(&announcer),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("the repository's storage refused a chunk of 2000/")
            && said.contains("the write stopped")
            && said.contains("AccessDenied"),
        "{said}"
    );
    let refused = said
        .lines()
        .filter(|l| l.contains("FAILED: writing") && l.contains("AccessDenied"))
        .count();
    let failed = said.lines().filter(|l| l.contains("FAILED")).count();
    assert!(
        refused >= 1 && refused == failed && refused < names.len(),
        "{refused} of {} tiles met the refusal, {failed} failed: {said}",
        names.len()
    );
    assert!(!said.contains(&announcer.1), "the secret printed: {said}");
    assert_eq!(commits(&as_user(&reader)), before, "nothing landed");

    // Everything denied: the write is refused at its announcement, before any tile.
    let out = w.run_with(
        &["--repo", repo, "write", "--all", "--year", "2000"],
        &as_user(&reader),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("writing the announcement") && said.contains("AccessDenied"),
        "{said}"
    );
    assert!(!said.contains("2000/00N_000E"), "no tile was read: {said}");
    assert_eq!(commits(&as_user(&reader)), before, "nothing landed");
}

/// The workspace's config given one try per repository request: a try that times out is
/// the request's failure, so the write says it at once.
fn one_try(w: &Work) {
    let path = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[storage_retries]\ntries = 1\n");
    std::fs::write(&path, text).unwrap();
}

#[test]
fn an_s3_try_waits_at_most_10_s_for_its_connection() {
    use std::os::fd::AsRawFd;
    // An endpoint that never completes a connection: a listener whose accept queue is full
    // (a backlog of 0, one connection queued and never accepted) drops every new SYN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket this test owns.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let quick = std::time::Duration::from_millis(500);
    let _queued: Vec<_> = (0..3)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, quick).ok())
        .collect();
    let probe = std::net::TcpStream::connect_timeout(&addr, quick);
    assert!(
        probe
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut),
        "the endpoint still takes connections: {probe:?}"
    );
    let w = Work::new();
    w.listed_tiles(2000, &common::tile_names(1));
    one_try(&w);
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://{addr}")),
        ("AWS_ACCESS_KEY_ID", common::s3::ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", common::s3::SECRET_KEY.to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let started = std::time::Instant::now();
    let mut child = w.spawn_with(
        &[
            "--repo",
            "s3://cubes/unreachable",
            "write",
            "--all",
            "--year",
            "2000",
        ],
        &env,
    );
    let out = wait_at_most(&mut child, std::time::Duration::from_secs(40));
    let took = started.elapsed().as_secs_f64();
    let said = text(&out);
    eprintln!("the write gave up after {took:.1} s: {said}");
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("HTTP connect timeout occurred after 10s"),
        "{said}"
    );
    // It waited for the connection (not a refusal), and no longer than the limit a try.
    assert!(
        (9.0..25.0).contains(&took),
        "gave up after {took:.1} s: {said}"
    );
}

/// Wait for a child at most `limit`; kill it and fail past that.
fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still waiting after {limit:?}: a try held past its limit");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut stdout = vec![];
    let mut stderr = vec![];
    use std::io::Read;
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut stderr).unwrap();
    }
    std::process::Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_try_waits_at_most_60_s_for_the_servers_answer() {
    use tilecube::netfault::{FaultProxy, Faults};
    let moto = common::s3::Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    w.listed_tiles(2000, &common::tile_names(1));
    let repo = "s3://cubes/stalled";
    let init = w.run_with(&["--repo", repo, "init"], &moto.env());
    assert!(init.status.success(), "{}", text(&init));
    one_try(&w);
    // Every connection through the proxy is taken, read and never answered, for longer
    // than the limit.
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(
        upstream,
        Faults {
            stall: 1.0,
            stall_for: std::time::Duration::from_secs(600),
            ..Faults::default()
        },
    )
    .await
    .expect("proxy");
    let env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| {
            if k == "AWS_ENDPOINT_URL" {
                (k, proxy.url())
            } else {
                (k, v)
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let mut child = w.spawn_with(&["--repo", repo, "write", "--all", "--year", "2000"], &env);
    let out = tokio::task::block_in_place(|| {
        wait_at_most(&mut child, std::time::Duration::from_secs(66))
    });
    let took = started.elapsed().as_secs_f64();
    let said = text(&out);
    eprintln!(
        "the write gave up after {took:.1} s ({}): {said}",
        proxy.counts()
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("HTTP read timeout occurred after 60s"),
        "{said}"
    );
    assert!(
        took >= 59.0,
        "gave up after {took:.1} s, before the limit: {said}"
    );
    assert!(proxy.counts().stall >= 1, "{}", proxy.counts());
}

/// The shell command that runs the console on a workspace with more environment (its
/// runs' workers inherit it).
fn console_cmd(w: &Work, env: &[(&str, String)]) -> String {
    let exports: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    format!(
        "{exports}TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    )
}

/// The console's details panel: the lines from the cursor tile's name down.
fn details(screen: &str, tile: &str) -> String {
    let from = screen
        .find(&format!("2000/{tile}  "))
        .unwrap_or_else(|| panic!("no details of {tile}:\n{screen}"));
    screen[from..].to_string()
}

#[test]
fn during_a_retry_the_console_keeps_the_last_failure_in_the_details() {
    let w = Work::new();
    w.tile(2000, "80N_180W", Flaw::ThreeBands);
    w.list(2000, &["80N_180W"], "");
    w.ok(&["init"]);
    let out = w.run(&["write", "--year", "2000", "--tiles", "80N_180W"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The source is fixed; the retry's worker is held with the tile's chunks uploaded,
    // before its commit, until the screen is read.
    w.tile(2000, "80N_180W", Flaw::None);
    let tmux = Tmux::start(&console_cmd(&w, &w.hold_env("chunks-uploaded#1")));
    let s = tmux.wait_for("1:2000 0/1");
    assert!(s.contains("80N ! "), "{s}");
    assert!(
        details(&s, "80N_180W").contains("failed (1 attempt): has 3 bands; expected 1"),
        "{s}"
    );
    tmux.keys(&["f", "w"]);
    tmux.wait_for("Write 1 tile of");
    tmux.keys(&["Enter"]);
    w.wait_held("chunks-uploaded", 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let s = loop {
        let s = tmux.screen();
        if !s.contains("80N ! ") && s.contains("writing: ") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no retry shown:\n{s}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let d = details(&s, "80N_180W");
    assert!(
        d.contains("last attempt failed (1 attempt): has 3 bands; expected 1"),
        "the retry's details keep the last failure:\n{s}"
    );
    assert!(!d.contains("  failed "), "not failed while retried:\n{s}");
    // Once the tile is written, the failure is gone.
    w.release("chunks-uploaded", 1);
    tmux.wait_for("write finished: 1/1 written, 1 landed, 0 failed");
    let s = tmux.wait_for("1:2000 1/1");
    assert!(s.contains("80N # "), "{s}");
    assert!(!s.contains("has 3 bands"), "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

/// The runs, as `runs --json` lists them, newest first.
fn runs(w: &Work) -> Vec<serde_json::Value> {
    json(&w.ok(&["runs", "--json"]))
        .as_array()
        .expect("runs")
        .clone()
}

/// Wait until the newest run satisfies `ok`; returns it.
fn wait_run(w: &Work, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let all = runs(w);
        if let Some(r) = all.first()
            && ok(r)
        {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run {what}: {all:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn l_shows_the_last_2000_lines_of_the_runs_log() {
    let w = Work::new();
    w.listed_tiles(2000, &["80N_180W".to_string()]);
    w.ok(&["init"]);
    w.ok(&["write", "--detach", "--year", "2000", "--tiles", "80N_180W"]);
    let r = wait_run(&w, "done", |r| r["state"] == "done");
    let log = PathBuf::from(r["log"].as_str().expect("the run's log"));
    // The run's own lines, then numbered ones: 2,600 lines and more in all.
    let mut text = std::fs::read_to_string(&log).expect("log.txt");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let own = text.lines().count();
    assert!(own >= 1, "the run logged nothing");
    let total = own + 2600;
    for n in own + 1..=total {
        text.push_str(&format!("log line {n:06} of {total}\n"));
    }
    std::fs::write(&log, &text).unwrap();
    let line = |n: usize| format!("log line {n:06} of {total}");

    let tmux = Tmux::start(&console_cmd(&w, &[]));
    tmux.wait_for("1:2000 1/1");
    tmux.keys(&["L"]);
    // At first the newest lines, the last one at the bottom.
    let s = tmux.wait_for(&line(total));
    assert!(s.contains(" log ("), "{s}");
    // Home: the oldest line the console holds is line N-1999, and none before it.
    tmux.keys(&["Home"]);
    let s = tmux.wait_for(&line(total - 1999));
    assert!(!s.contains(&line(total - 2000)), "{s}");
    // ... as the first of a whole window of lines.
    assert!(s.contains(&line(total - 1999 + 15)), "{s}");
    assert!(!s.contains(&line(total)), "{s}");
    // Up at the top stays there.
    tmux.keys(&["Up", "PageUp"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let s = tmux.screen();
    assert!(
        s.contains(&line(total - 1999)) && !s.contains(&line(total - 2000)),
        "{s}"
    );
    // End: the newest again.
    tmux.keys(&["End"]);
    tmux.wait_for(&line(total));
    tmux.keys(&["Escape", "q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn a_detached_runs_record_is_rewritten_about_once_a_second_while_it_writes() {
    // A busy run: 96 tiles of 2,000 px in chunks of 100 (400 chunks each), one thread, so
    // its chunks progress many times a second for several seconds.
    let w = Work::with_grid(2_000, 100);
    let names = common::tile_names(96);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    w.ok(&[
        "write",
        "--detach",
        "--all",
        "--year",
        "2000",
        "--threads",
        "1",
    ]);
    let r = wait_run(&w, "started", |r| r["plan"].is_string());
    let record = PathBuf::from(r["plan"].as_str().unwrap()).join("shards/0000.json");
    // Every version of the record, by its `updated`, until the run ends.
    struct Seen {
        updated: chrono::DateTime<chrono::Utc>,
        state: String,
        landed: u64,
        chunks: u64,
    }
    let mut seen: Vec<Seen> = vec![];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "the run never ended");
        if let Ok(text) = std::fs::read_to_string(&record)
            && let Ok(r) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let updated = serde_json::from_value(r["updated"].clone()).expect("updated");
            if seen.last().is_none_or(|s| s.updated != updated) {
                let running = r["running"].as_array().cloned().unwrap_or_default();
                seen.push(Seen {
                    updated,
                    state: r["state"].as_str().unwrap_or_default().to_string(),
                    landed: r["landed"].as_u64().unwrap_or(0),
                    chunks: r["written"].as_u64().unwrap_or(0) * 400
                        + running
                            .iter()
                            .map(|t| t["done"].as_u64().unwrap_or(0))
                            .sum::<u64>(),
                });
            }
            if seen.last().is_some_and(|s| s.state != "running") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The rewrites while nothing landed or failed (those are written at once).
    let busy: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.state == "running" && s.landed == 0)
        .collect();
    let gaps: Vec<f64> = busy
        .windows(2)
        .map(|p| (p[1].updated - p[0].updated).as_seconds_f64())
        .collect();
    eprintln!("{} rewrites while writing, gaps {gaps:.2?}", busy.len());
    assert!(
        gaps.len() >= 3,
        "several rewrites while writing: {gaps:.2?}"
    );
    // Each told of progress since the one before.
    assert!(
        busy.windows(2).skip(1).all(|p| p[1].chunks > p[0].chunks),
        "{:?}",
        busy.iter().map(|s| s.chunks).collect::<Vec<_>>()
    );
    // At most once a second, and not less often while chunks progress.
    assert!(
        gaps.iter().all(|&g| g >= 0.95),
        "a run's record rewritten within a second of the last: {gaps:.2?}"
    );
    assert!(
        gaps.iter().all(|&g| g <= 2.0),
        "a busy run's record left unchanged for over 2 s: {gaps:.2?}"
    );
}

#[test]
fn runs_says_no_progress_for_a_stopped_worker() {
    let w = Work::new();
    let names = common::tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_nginx, _proxy, url) = rt.block_on(common::nginx::slow_source(
        &w,
        std::time::Duration::from_millis(150),
    ));
    w.ok(&[
        "--source",
        &url,
        "write",
        "--detach",
        "--all",
        "--year",
        "2000",
        "--threads",
        "1",
    ]);
    let r = wait_run(&w, "progressing", |r| {
        r["state"] == "running" && r["record"]["progressed"].is_string()
    });
    let pid = r["pid"].as_u64().expect("pid").to_string();
    let record = PathBuf::from(r["plan"].as_str().unwrap()).join("shards/0000.json");
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success(),
            "kill {sig} {pid}"
        );
    };
    signal("-STOP");
    let stopped = chrono::Utc::now();
    let listing = w.ok(&["runs"]);
    assert!(!listing.contains("no progress"), "{listing}");
    // Stopped, its record says when it last progressed; `runs` says so once 30 s passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(45);
    let (listing, when) = loop {
        let listing = w.ok(&["runs"]);
        if listing.contains("no progress for") {
            break (listing, chrono::Utc::now());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never said: {listing}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let rec = json(&std::fs::read_to_string(&record).unwrap());
    let progressed: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rec["progressed"].clone()).expect("progressed");
    assert!(progressed <= stopped, "{rec}");
    let idle = (when - progressed).as_seconds_f64();
    let said: f64 = listing
        .split("no progress for ")
        .nth(1)
        .and_then(|s| s.split(" s").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("a number of seconds: {listing}"));
    eprintln!("{listing}");
    assert!(said >= 30.0, "{listing}");
    assert!(
        (said - idle).abs() <= 2.0,
        "said {said} s, idle {idle:.1} s: {listing}"
    );
    assert!(idle < 32.0, "said late, after {idle:.1} s idle: {listing}");
    assert!(
        listing.contains(&format!("its worker (pid {pid}) is alive")),
        "{listing}"
    );
    // Let go, it progresses again and ends; the note is gone.
    signal("-CONT");
    let r = wait_run(&w, "ended", |r| {
        r["state"] != "running" && r["state"] != "starting"
    });
    assert_eq!(r["state"], "done", "{r}");
    assert!(!w.ok(&["runs"]).contains("no progress"));
}
