//! Cloud Storage object composition — how a gs:// job's output is assembled inside the
//! bucket — driven against fake-gcs-server's JSON API on loopback: more sources than one
//! compose call takes (32) are composed as a tree, in order, and the MD5 the server computed
//! for an object is read back to check segments without reading them.
//!
//! A whole gs:// render is composed there too: the workers write their segments to the
//! bucket directly, the orchestrator reaches it only through a byte-counting proxy, and the
//! output object is a composite of the segments, equal frame for frame to a local render.

mod common;

use std::sync::atomic::Ordering;

use common::peers::*;
use common::*;
use helios_infra::storage::gcs::GcsBucket;
use md5::{Digest, Md5};

async fn upload(base: &str, bucket: &str, name: &str, data: Vec<u8>) {
    let resp = http_client()
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
    let body = http_client()
        .get(format!(
            "{}/storage/v1/b/composed/o/team%2Fjobs%2Fj%2Foutput.mp4?alt=media",
            peer.endpoint
        ))
        .send()
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

#[test]
fn a_gs_job_is_composed_in_the_bucket_and_downloaded_once() {
    let peer = fake_gcs("gsjob");
    let proxy = counting_proxy(&peer.endpoint);
    let direct = vec![("STORAGE_EMULATOR_HOST", peer.endpoint.clone())];
    let (workers, urls) = WorkerServer::pool(2, &direct);
    let r = ffmpeg_renderer();
    let plan = [
        "--frames",
        "0..90",
        "--fps",
        "30000/1001",
        "--size",
        "320x240",
        "--chunks",
        "40",
        "--preset",
        "ultrafast",
    ];
    let env = Env::new();
    let mut args = vec![
        "render",
        "-o",
        "out.mp4",
        "--storage",
        "gs://gsjob/team-c",
        "--adapter",
        "http",
        "--workers",
        &urls,
        "--concurrency",
        "2",
    ];
    args.extend_from_slice(&plan);
    let through_proxy = vec![("STORAGE_EMULATOR_HOST", proxy.endpoint.clone())];
    env.ok_with_env(&with_renderer(&args, &r), through_proxy);
    let id = env.only_job();

    let all = gcs_objects(&peer, "gsjob", "team-c/");
    let output_name = format!("team-c/jobs/{id}/output.mp4");
    let output = all
        .iter()
        .find(|o| o["name"] == output_name.as_str())
        .unwrap_or_else(|| panic!("no {output_name} in {all:?}"));
    let size: u64 = output["size"].as_str().unwrap().parse().unwrap();
    assert_eq!(size, std::fs::metadata(env.path("out.mp4")).unwrap().len());
    // Nothing of the assembly is left.
    assert!(
        !all.iter().any(|o| {
            let n = o["name"].as_str().unwrap_or_default();
            n.contains("/assembly/")
        }),
        "{all:?}"
    );
    assert!(gcs_objects(&peer, "gsjob", ".helios-uploads/").is_empty());

    // The orchestrator sent little, and received the output once plus Cloud Storage's JSON
    // answers: about one object resource a segment (the size checked when its chunk was
    // committed; fake-gcs-server sends whole resources, ~800 bytes, where Cloud Storage
    // honours `fields`), and no MD5 read or range read at all (the download is checked).
    let sent = proxy.sent.load(Ordering::SeqCst);
    let received = proxy.received.load(Ordering::SeqCst);
    eprintln!("orchestrator: sent {sent} bytes, received {received} bytes, output {size} bytes");
    assert!(
        (sent as f64) < 0.05 * size as f64,
        "the orchestrator uploaded {sent} bytes for a {size}-byte output"
    );
    assert!(
        received <= size + 1024 * (40 + 16),
        "the orchestrator downloaded {received} bytes for a {size}-byte output"
    );

    let st = env.status(&id);
    assert_eq!(st["stitch"], "bytes", "{st}");
    assert_eq!(st["assembly"], "bucket", "{st}");
    assert_eq!(
        st["output_url"],
        format!("gs://gsjob/team-c/jobs/{id}/output.mp4")
    );

    let local = Env::new();
    let mut args = vec!["render", "-o", "local.mp4"];
    args.extend_from_slice(&plan);
    local.ok(&with_renderer(&args, &r));
    let (a, b) = (env.path("out.mp4"), local.path("local.mp4"));
    assert_eq!(framemd5(&a), framemd5(&b));
    assert_eq!(packet_pts(&a), packet_pts(&b));
    assert_eq!(probe_stream(&a).0, 90);
    drop(workers);
}

/// Reads and rewrites one object of a fake-gcs-server bucket (what a lying worker, or a
/// bit flipped in storage, would leave).
fn flip_last_byte(peer: &Peer, bucket: &str, name: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let enc = name.replace('/', "%2F");
        let url = format!("{}/storage/v1/b/{bucket}/o/{enc}?alt=media", peer.endpoint);
        let mut data = http_client()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        assert!(!data.is_empty(), "{name} is empty");
        let last = data.len() - 1;
        data[last] ^= 0xff;
        upload(&peer.endpoint, bucket, name, data).await;
    });
}

#[test]
fn a_segment_changed_in_the_bucket_is_caught_in_the_download_and_rendered_again() {
    let peer = fake_gcs("gslies");
    let vars = vec![("STORAGE_EMULATOR_HOST", peer.endpoint.clone())];
    let r = ffmpeg_renderer();
    let plan = [
        "--frames",
        "0..48",
        "--size",
        "160x120",
        "--chunks",
        "4",
        "--preset",
        "ultrafast",
    ];
    let env = Env::new();
    let mut args = vec!["render", "-o", "out.mp4", "--storage", "gs://gslies/p"];
    args.extend_from_slice(&plan);
    let crashed = env
        .cmd(&with_renderer(&args, &r))
        .envs(vars.clone())
        .env("HELIOS_FAILPOINTS", "before-stitch")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "{crashed:?}");
    let id = env.only_job();
    let chunks = env.status(&id)["chunks"].clone();
    // Same size, one byte changed: the size check at commit cannot see it.
    flip_last_byte(
        &peer,
        "gslies",
        &format!("p/{}", chunks[2]["segment"].as_str().unwrap()),
    );
    let before = env.attempts(&id);

    let out = env
        .cmd(&["resume", &id])
        .envs(vars.clone())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("segment of chunk 2 rejected"), "{log}");
    assert!(log.contains("SHA-256"), "{log}");
    let after: Vec<u64> = env.attempts(&id);
    let mut expected = before.clone();
    expected[2] += 1;
    assert_eq!(after, expected, "only chunk 2 was rendered again");
    // Nothing but the output at -o: the failed download was never moved there.
    assert_eq!(env.files_like("out.mp4"), vec!["out.mp4".to_string()]);

    let mut local = vec!["render", "-o", "local.mp4"];
    local.extend_from_slice(&plan);
    env.ok(&with_renderer(&local, &r));
    assert_eq!(
        framemd5(&env.path("out.mp4")),
        framemd5(&env.path("local.mp4"))
    );
}
