//! Cloud Storage object composition — how a gs:// job's output is assembled inside the
//! bucket — driven against fake-gcs-server's JSON API on loopback: more sources than one
//! compose call takes (32) are composed as a tree, in order, and the MD5 the server computed
//! for an object is read back to check segments without reading them.
//!
//! What this does not prove: a whole gs:// render through compose. `object_store`'s GCS
//! client (every other storage call) speaks the XML API, which fake-gcs-server does not
//! implement for uploads, while moto (the XML peer of tests/cloud_storage.rs) has no JSON
//! compose; no one loopback peer here speaks both.

mod common;

use common::peers::*;
use helios_infra::storage::gcs::GcsBucket;
use md5::{Digest, Md5};

async fn upload(base: &str, bucket: &str, name: &str, data: Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/upload/storage/v1/b/{bucket}/o"))
        .query(&[("uploadType", "media"), ("name", name)])
        .body(data)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}

#[tokio::test]
async fn seventy_objects_compose_in_order_as_a_tree_and_md5s_read_back() {
    let peer = fake_gcs("composed");
    // Only this test in this binary touches the variable.
    std::env::set_var("STORAGE_EMULATOR_HOST", &peer.endpoint);
    let bucket = GcsBucket::open("gs://composed/team").unwrap().unwrap();

    let mut expected = Vec::new();
    let mut keys = Vec::new();
    for i in 0..70u32 {
        let data: Vec<u8> = (0..(1000 + i * 37)).map(|b| (b * 7 + i) as u8).collect();
        let key = format!("jobs/j/attempts/{i}/1.m4s");
        upload(
            &peer.endpoint,
            "composed",
            &format!("team/{key}"),
            data.clone(),
        )
        .await;
        expected.extend_from_slice(&data);
        keys.push(key);
    }
    let made = bucket
        .compose_tree(&keys, "jobs/j/output.mp4", "jobs/j/assembly/compose")
        .await
        .unwrap();
    // 70 sources: three groups of at most 32, then one compose of the three.
    assert_eq!(made.len(), 3, "{made:?}");
    let body = reqwest::get(format!(
        "{}/storage/v1/b/composed/o/team%2Fjobs%2Fj%2Foutput.mp4?alt=media",
        peer.endpoint
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(body.len(), expected.len());
    assert!(body[..] == expected[..], "composed bytes differ");

    let md5 = bucket.md5(&keys[5]).await.unwrap().unwrap();
    let data: Vec<u8> = (0..(1000 + 5 * 37)).map(|b| (b * 7 + 5) as u8).collect();
    assert_eq!(md5, hex::encode(Md5::digest(&data)));

    // Limits of one call, and a missing source, are errors naming the call.
    assert!(bucket.compose(&[], "x").await.is_err());
    let many: Vec<String> = keys[..33].to_vec();
    assert!(bucket.compose(&many, "x").await.is_err());
    let err = bucket
        .compose(&["jobs/j/missing".to_string()], "x")
        .await
        .unwrap_err()
        .to_string();
    // (Cloud Storage answers 404; fake-gcs-server 500.) Either way the error names the call.
    assert!(err.contains("compose of x"), "{err}");
}
