//! S3 and GCS storage through a real protocol peer on loopback: put, get, list, overwrite,
//! multipart, and a whole render whose specs, segments and outputs live in the bucket.
//!
//! The GCS peer: fake-gcs-server, through Cloud Storage's JSON API (the API gs:// storage
//! speaks, see src/storage/gcs_store.rs), via `STORAGE_EMULATOR_HOST` — the same requests
//! as against storage.googleapis.com, without the OAuth token.

mod common;

use bytes::Bytes;
use common::peers::*;
use common::*;
use helios_infra::storage::{Storage, MULTIPART_PART_BYTES};

/// Storage reads its settings from the process environment; only this test sets them.
fn set_env(vars: &[(&'static str, String)]) {
    for k in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "STORAGE_EMULATOR_HOST",
    ] {
        std::env::remove_var(k);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
}

async fn conformance(url: &str) {
    let s = Storage::open(url).unwrap();
    s.put("jobs/a/job.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(&s.get("jobs/a/job.json").await.unwrap()[..], b"{}");
    s.put("jobs/a/job.json", Bytes::from_static(b"{\"v\":2}"))
        .await
        .unwrap();
    assert_eq!(
        &s.get("jobs/a/job.json").await.unwrap()[..],
        b"{\"v\":2}",
        "overwrite"
    );
    assert_eq!(s.size("jobs/a/nope").await.unwrap(), None);

    // A file larger than one part goes up as a multipart upload and comes back intact.
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..MULTIPART_PART_BYTES * 2 + 12345)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let src = dir.path().join("big.bin");
    std::fs::write(&src, &big).unwrap();
    s.put_file("jobs/a/attempts/0/1.mp4", &src).await.unwrap();
    assert_eq!(
        s.size("jobs/a/attempts/0/1.mp4").await.unwrap(),
        Some(big.len() as u64)
    );
    let back = s
        .fetch_to_dir("jobs/a/attempts/0/1.mp4", dir.path())
        .await
        .unwrap();
    assert!(std::fs::read(back).unwrap() == big, "multipart round trip");

    assert_eq!(
        s.list("jobs/a").await.unwrap(),
        vec!["jobs/a/attempts/0/1.mp4", "jobs/a/job.json"]
    );
    let (again, key) = Storage::open_object_url(&s.url_for("jobs/a/job.json")).unwrap();
    assert_eq!(key, "jobs/a/job.json");
    assert_eq!(&again.get(&key).await.unwrap()[..], b"{\"v\":2}");
    s.delete("jobs/a/job.json").await.unwrap();
    assert_eq!(s.size("jobs/a/job.json").await.unwrap(), None);
}

/// One test for both backends: storage reads its settings from this process's
/// environment, so they must not run concurrently.
#[tokio::test]
async fn s3_and_gcs_storage_against_loopback_peers() {
    let peer = moto("helios-test");
    set_env(&s3_env(&peer));
    conformance("s3://helios-test/some/prefix").await;
    let gcs = fake_gcs("helios-gcs");
    set_env(&gcs_env(&gcs));
    conformance("gs://helios-gcs/gcs/prefix").await;
    // What went through the GCS client is in the bucket, under its prefix, and the parts of
    // the multipart upload are gone.
    let listed: serde_json::Value = http_client()
        .get(format!("{}/storage/v1/b/helios-gcs/o", gcs.endpoint))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["gcs/prefix/jobs/a/attempts/0/1.mp4"],
        "{listed}"
    );
    // A listing is by whole path segments: "jobs/a" is not a prefix of "jobs/ab".
    let s = Storage::open("gs://helios-gcs/gcs/prefix").unwrap();
    s.put("jobs/ab/x", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(
        s.list("jobs/a").await.unwrap(),
        vec!["jobs/a/attempts/0/1.mp4"]
    );
    // Bad input to the store is an error naming the object, not a panic.
    let err = s.get("jobs/none").await.unwrap_err().to_string();
    assert!(
        err.contains("jobs/none") && err.contains("not found"),
        "{err}"
    );
}

/// Environment for the GCS client talking to `peer`'s JSON API.
fn gcs_env(peer: &Peer) -> Vec<(&'static str, String)> {
    vec![("STORAGE_EMULATOR_HOST", peer.endpoint.clone())]
}

#[test]
fn a_render_with_gcs_storage_equals_a_local_render() {
    let peer = fake_gcs("gcsrenders");
    let env = Env::new();
    render_in_bucket(&env, "gs://gcsrenders/team-b", &gcs_env(&peer));
    let st = env.status(&env.status_ids()[0]);
    assert_eq!(st["storage"], "gs://gcsrenders/team-b");
}

fn render_in_bucket(env: &Env, storage: &str, vars: &[(&'static str, String)]) {
    let r = ffmpeg_renderer();
    let args = with_renderer(
        &[
            "render",
            "--storage",
            storage,
            "-o",
            "cloud.mp4",
            "--frames",
            "0..40",
            "--size",
            "64x64",
            "--chunks",
            "4",
            "--lossless",
        ],
        &r,
    );
    env.ok_with_env(&args, vars.iter().map(|(k, v)| (k, v)));
    // Nothing went to local storage: the job lives in the bucket.
    assert!(!env.home().join("storage/jobs").exists());
    env.ok(&with_renderer(
        &[
            "render",
            "-o",
            "local.mp4",
            "--frames",
            "0..40",
            "--size",
            "64x64",
            "--chunks",
            "1",
            "--lossless",
        ],
        &r,
    ));
    assert_eq!(
        framemd5(&env.path("cloud.mp4")),
        framemd5(&env.path("local.mp4"))
    );
}

#[test]
fn a_render_with_s3_storage_equals_a_local_render() {
    let peer = moto("renders");
    let env = Env::new();
    render_in_bucket(&env, "s3://renders/team-a", &s3_env(&peer));
    let st = env.status(&env.status_ids()[0]);
    assert_eq!(st["storage"], "s3://renders/team-a");
}
