//! The one function tilecube patches into icechunk (`patches/README.md`):
//! `Session::set_chunk_refs` records many chunks of one array as `set_chunk_ref` does for
//! each, with the same checks.

use bytes::Bytes;
use icechunk::format::manifest::ChunkPayload;
use icechunk::format::{ChunkIndices, Path};
use icechunk::{Repository, new_in_memory_storage};
use zarrs::array::{ArrayBuilder, data_type};
use zarrs::group::GroupBuilder;

async fn repo_with_array() -> (Repository, Path) {
    let storage = new_in_memory_storage().await.expect("storage");
    let repo = Repository::create(storage)
        .execute()
        .await
        .expect("repository");
    let session = repo.writable_session("main").await.expect("session");
    let store = std::sync::Arc::new(zarrs_icechunk::AsyncIcechunkStore::new(session));
    GroupBuilder::new()
        .build(store.clone(), "/")
        .expect("group")
        .async_store_metadata()
        .await
        .expect("group metadata");
    ArrayBuilder::new(vec![2, 40, 40], vec![1, 10, 10], data_type::uint8(), 255u8)
        .build(store.clone(), "/a")
        .expect("array")
        .async_store_metadata()
        .await
        .expect("array metadata");
    let session = store.session();
    let mut s = session.write().await;
    s.commit("layout").execute().await.expect("commit");
    (repo, Path::new("/a").expect("path"))
}

fn idx(c: [u32; 3]) -> ChunkIndices {
    ChunkIndices(c.to_vec())
}

fn inline(v: u8) -> Option<ChunkPayload> {
    Some(ChunkPayload::Inline(Bytes::from(vec![v; 3])))
}

#[tokio::test]
async fn set_chunk_refs_records_what_set_chunk_ref_records() {
    let (repo, path) = repo_with_array().await;
    let edits = vec![
        (idx([0, 0, 0]), inline(1)),
        (idx([0, 3, 2]), inline(2)),
        (idx([1, 1, 1]), inline(3)),
        (idx([0, 0, 0]), inline(4)), // a later edit of the same chunk wins
        (idx([1, 2, 2]), None),      // removing a chunk that was never there
    ];
    let mut one_by_one = repo.writable_session("main").await.expect("session");
    for (c, p) in edits.clone() {
        one_by_one
            .set_chunk_ref(path.clone(), c, p)
            .await
            .expect("set");
    }
    let mut batched = repo.writable_session("main").await.expect("session");
    batched
        .set_chunk_refs(path.clone(), edits)
        .await
        .expect("set many");
    for s in [&one_by_one, &batched] {
        let get = |c| {
            let s = s.clone();
            let path = path.clone();
            async move { s.get_chunk_ref(&path, &idx(c)).await.expect("get") }
        };
        assert_eq!(get([0, 0, 0]).await, inline(4));
        assert_eq!(get([0, 3, 2]).await, inline(2));
        assert_eq!(get([1, 1, 1]).await, inline(3));
        assert_eq!(get([1, 2, 2]).await, None);
        assert_eq!(get([1, 3, 3]).await, None);
    }
    // And both commit: the batched session's references land like the others.
    one_by_one.commit("a").execute().await.expect("commit a");
    let landed = batched.commit("b").execute().await;
    assert!(
        landed.is_err(),
        "the batched session was opened on the same base: it conflicts, as a second session would"
    );
    let mut batched = repo.writable_session("main").await.expect("session");
    batched
        .set_chunk_refs(path.clone(), vec![(idx([1, 3, 3]), inline(9))])
        .await
        .expect("set many");
    let id = batched.commit("b").execute().await.expect("commit b");
    let read = repo
        .readonly_session(&icechunk::repository::VersionInfo::SnapshotId(id))
        .await
        .expect("read the batched commit");
    assert_eq!(
        read.get_chunk_ref(&path, &idx([1, 3, 3]))
            .await
            .expect("get"),
        inline(9)
    );
    assert_eq!(
        read.get_chunk_ref(&path, &idx([0, 0, 0]))
            .await
            .expect("get"),
        inline(4)
    );
}

#[tokio::test]
async fn a_refused_batch_leaves_no_partial_edit() {
    let (repo, path) = repo_with_array().await;
    let mut s = repo.writable_session("main").await.expect("session");
    for bad in [
        (idx([0, 9, 0]), inline(1)),
        (idx([0, 1, 0]), Some(ChunkPayload::Inline(Bytes::new()))),
    ] {
        let refused = s
            .set_chunk_refs(
                path.clone(),
                vec![
                    (idx([0, 0, 0]), inline(1)),
                    (idx([0, 1, 1]), inline(2)),
                    bad,
                ],
            )
            .await;
        assert!(refused.is_err(), "the batch is refused");
        for c in [[0, 0, 0], [0, 1, 1]] {
            assert_eq!(
                s.get_chunk_ref(&path, &idx(c)).await.expect("get"),
                None,
                "nothing of a refused batch is recorded"
            );
        }
        assert!(!s.has_uncommitted_changes(), "the session is as it was");
    }
}

#[tokio::test]
async fn set_chunk_refs_refuses_what_set_chunk_ref_refuses() {
    let (repo, path) = repo_with_array().await;
    let mut s = repo.writable_session("main").await.expect("session");
    let out_of_range = s
        .set_chunk_refs(path.clone(), vec![(idx([0, 9, 0]), inline(1))])
        .await;
    assert!(out_of_range.is_err(), "chunk index past the array's shape");
    let empty = s
        .set_chunk_refs(
            path.clone(),
            vec![(idx([0, 0, 0]), Some(ChunkPayload::Inline(Bytes::new())))],
        )
        .await;
    assert!(empty.is_err(), "a zero-length chunk");
    let missing = s
        .set_chunk_refs(
            Path::new("/nope").expect("path"),
            vec![(idx([0, 0, 0]), inline(1))],
        )
        .await;
    assert!(missing.is_err(), "no such array");
    let mut ro = repo
        .readonly_session(&icechunk::repository::VersionInfo::BranchTipRef(
            "main".into(),
        ))
        .await
        .expect("read-only");
    assert!(
        ro.set_chunk_refs(path.clone(), vec![(idx([0, 0, 0]), inline(1))])
            .await
            .is_err(),
        "a read-only session"
    );
}
