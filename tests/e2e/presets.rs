//! Dataset presets: the GLAD cube is the same, bit for bit, whatever form its preset takes.

use crate::common;

use common::Work;

/// Every key of the head of `main` with the SHA-256 of its stored bytes (see
/// `tests/python/store_digest.py`).
fn store_digest(w: &Work) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/store_digest.py");
    let out = std::process::Command::new(common::python_ic2())
        .arg(script)
        .arg(w.repo())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "store_digest.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("digest JSON")
}

/// The GLAD test cube written by tilecube before presets described datasets (commit d211878,
/// `tests/fixtures/README.md`) and now: every array's metadata, coordinate and chunk, and the
/// root group's metadata but tilecube's own record, are the same bytes.
#[test]
fn the_glad_cube_is_the_same_bit_for_bit_as_before_the_dataset_model() {
    let w = Work::new();
    let tiles: Vec<String> = ["80N_180W", "50N_070W", "00N_000E", "10S_170E"]
        .map(String::from)
        .to_vec();
    for year in [2000, 2020] {
        w.listed_tiles(year, &tiles);
    }
    w.ok(&["init"]);
    w.ok(&["write", "--all"]);
    let now = store_digest(&w);
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/glad-cube-digest.json");
    if std::env::var_os("TILECUBE_BLESS_GLAD_DIGEST").is_some() {
        std::fs::write(&fixture, serde_json::to_string_pretty(&now).unwrap()).unwrap();
    }
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).unwrap();
    let (now, before) = (now.as_object().unwrap(), before.as_object().unwrap());
    assert!(
        before.len() > 100,
        "the fixture holds the cube's keys: {}",
        before.len()
    );
    let differ: Vec<&String> = before
        .keys()
        .chain(now.keys())
        .filter(|k| now.get(*k) != before.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "keys that differ from before: {differ:?}"
    );
}
