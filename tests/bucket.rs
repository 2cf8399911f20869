//! In-bucket stitching on S3 (moto's server on loopback, the real binary as HTTP workers):
//! the output is a multipart upload whose parts are copied inside the bucket, so the
//! orchestrator — which here reaches the bucket only through a byte-counting proxy, while
//! the workers reach it directly — sends almost nothing and downloads the output once.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering;

use common::peers::*;
use common::*;

/// Frames of noise (big segments) then a plain test pattern (small segments): some parts
/// are copied as they are, others joined by workers first.
fn renderer() -> Vec<String> {
    [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size={width}x{height}:rate={fps}",
        "-vf",
        "noise=alls=100:allf=t+u:enable='lt(t,1.2)',trim=start_frame={start}:end_frame={end}",
        "-c:v",
        "ffv1",
        "{output}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

const FRAMES: &str = "0..72";

fn render_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "render",
        "-o",
        out,
        "--frames",
        FRAMES,
        "--fps",
        "30",
        "--size",
        "720x480",
        "--chunks",
        "6",
        "--crf",
        "1",
        "--preset",
        "ultrafast",
    ];
    a.extend_from_slice(extra);
    a
}

struct Cloud {
    moto: Peer,
    proxy: CountingProxy,
    workers: Vec<WorkerServer>,
    urls: String,
}

/// The tests of this file run one at a time: a port freed for moto must not be taken by
/// another test's proxy or worker before moto binds it.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn cloud(bucket: &str) -> Cloud {
    let moto = moto(bucket);
    let proxy = counting_proxy(&moto.endpoint);
    let direct = s3_env(&moto);
    let (workers, urls) = WorkerServer::pool(2, &direct);
    Cloud {
        moto,
        proxy,
        workers,
        urls,
    }
}

impl Cloud {
    /// The orchestrator's environment: the bucket through the proxy.
    fn orchestrator_env(&self) -> Vec<(&'static str, String)> {
        let mut v = s3_env(&self.moto);
        for (k, val) in v.iter_mut() {
            if *k == "AWS_ENDPOINT_URL" {
                *val = self.proxy.endpoint.clone();
            }
        }
        v
    }

    fn flags<'a>(&'a self, storage: &'a str) -> Vec<&'a str> {
        vec![
            "--storage",
            storage,
            "--adapter",
            "http",
            "--workers",
            &self.urls,
            "--concurrency",
            "2",
        ]
    }
}

fn sizes(cloud: &Cloud, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let out = boto3(
        &cloud.moto,
        bucket,
        &format!(
            "r = s3.list_objects_v2(Bucket=B, Prefix='{prefix}')\nprint(json.dumps([[o['Key'], o['Size']] for o in r.get('Contents', [])]))"
        ),
    );
    serde_json::from_str(out.trim()).unwrap()
}

fn open_uploads(cloud: &Cloud, bucket: &str) -> usize {
    let out = boto3(
        &cloud.moto,
        bucket,
        "print(len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])))",
    );
    out.trim().parse().unwrap()
}

#[test]
fn an_s3_job_is_assembled_in_the_bucket_and_downloaded_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cloud("assembly");
    let env = Env::new();
    let r = renderer();
    let storage = "s3://assembly/team-a";
    let mut args = render_args("out.mp4", &[]);
    args.extend(c.flags(storage));
    let before = (
        c.proxy.sent.load(Ordering::SeqCst),
        c.proxy.received.load(Ordering::SeqCst),
    );
    assert_eq!(before, (0, 0));
    env.ok_with_env(&with_renderer(&args, &r), c.orchestrator_env());
    let id = env.only_job();

    let objects = sizes(&c, "assembly", "team-a/jobs/");
    let output_key = format!("team-a/jobs/{id}/output.mp4");
    let output = objects
        .iter()
        .find(|(k, _)| *k == output_key)
        .unwrap_or_else(|| panic!("no {output_key} in {objects:?}"))
        .1;
    let local = std::fs::metadata(env.path("out.mp4")).unwrap().len();
    assert_eq!(output, local, "the download is the object");
    // Some segments were big enough to be copied as they are, others were joined first.
    let segments: Vec<u64> = objects
        .iter()
        .filter(|(k, _)| k.ends_with(".m4s"))
        .map(|(_, s)| *s)
        .collect();
    assert!(
        segments.iter().any(|s| *s >= 5 * 1024 * 1024)
            && segments.iter().any(|s| *s < 5 * 1024 * 1024),
        "the test needs big and small segments: {segments:?}"
    );
    // Assembly leaves nothing behind: no pieces, no unfinished upload.
    assert!(
        !objects.iter().any(|(k, _)| k.contains("/assembly/")),
        "{objects:?}"
    );
    assert_eq!(open_uploads(&c, "assembly"), 0);

    // The orchestrator sent little, and downloaded the output once — the fragment headers
    // are checked in the downloaded bytes, not read from the bucket — plus S3's small XML
    // answers.
    let sent = c.proxy.sent.load(Ordering::SeqCst);
    let received = c.proxy.received.load(Ordering::SeqCst);
    eprintln!("orchestrator: sent {sent} bytes, received {received} bytes, output {output} bytes");
    assert!(
        (sent as f64) < 0.05 * output as f64,
        "the orchestrator uploaded {sent} bytes for a {output}-byte output"
    );
    assert!(
        received <= output + 16 * 1024,
        "the orchestrator downloaded {received} bytes for a {output}-byte output"
    );

    let st = env.status(&id);
    assert_eq!(st["stitch"], "bytes", "{st}");
    assert_eq!(
        st["output_url"],
        format!("s3://assembly/team-a/jobs/{id}/output.mp4")
    );

    // Frame for frame what a local render gives.
    let local_env = Env::new();
    local_env.ok(&with_renderer(&render_args("local.mp4", &[]), &r));
    let (a, b) = (env.path("out.mp4"), local_env.path("local.mp4"));
    assert_eq!(framemd5(&a), framemd5(&b));
    assert_eq!(packet_pts(&a), packet_pts(&b));
    assert_eq!(probe_stream(&a).0, 72);
    drop(c.workers);
}

#[test]
fn lying_segments_in_the_bucket_are_rendered_again_and_a_crash_mid_assembly_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cloud("lies");
    let env = Env::new();
    let storage = "s3://lies/p";
    let r = renderer();
    let mut args = render_args("out.mp4", &[]);
    args.extend(c.flags(storage));
    let crashed = env
        .cmd(&with_renderer(&args, &r))
        .envs(c.orchestrator_env())
        .env("HELIOS_FAILPOINTS", "before-stitch")
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let id = env.only_job();
    let chunks = env.status(&id)["chunks"].clone();
    let key = |i: usize| format!("p/{}", chunks[i]["segment"].as_str().unwrap());

    // Chunk 1 (big, copied as it is; chunk 0 is joined with the init): same size, one byte
    // changed — its MD5 no longer matches the report. Chunk 4 (small, joined by a worker):
    // the same. Chunk 5: chunk 4's bytes, so its frames sit at the wrong place.
    let big = 5 * 1024 * 1024;
    assert!(chunks[1]["bytes"].as_u64().unwrap() >= big, "{chunks}");
    assert!(chunks[4]["bytes"].as_u64().unwrap() < big, "{chunks}");
    boto3(
        &c.moto,
        "lies",
        &format!(
            "for k in ['{k1}', '{k4}']:\n    b = bytearray(s3.get_object(Bucket=B, Key=k)['Body'].read())\n    b[-1] ^= 0xff\n    s3.put_object(Bucket=B, Key=k, Body=bytes(b))\nfour = s3.get_object(Bucket=B, Key='{k4}')['Body'].read()\ns3.put_object(Bucket=B, Key='{k5}', Body=four)",
            k1 = key(1),
            k4 = key(4),
            k5 = key(5),
        ),
    );
    // Chunk 5 now holds other bytes than committed; to lie about frames rather than
    // hashes, the store is told its new size and hash, as a lying worker would have.
    // (Its report's layout still says where its frames belong.)
    let five = boto3(
        &c.moto,
        "lies",
        &format!(
            "import hashlib\nb = s3.get_object(Bucket=B, Key='{}')['Body'].read()\nprint(len(b), hashlib.sha256(b).hexdigest())",
            key(5)
        ),
    );
    let (len, sha) = five.trim().split_once(' ').unwrap();
    rusqlite::Connection::open(env.home().join("jobs.db"))
        .unwrap()
        .execute(
            "UPDATE chunks SET sha256 = ?1, bytes = ?2 WHERE job_id = ?3 AND idx = 5",
            rusqlite::params![sha, len.parse::<i64>().unwrap(), id],
        )
        .unwrap();

    // A crash in the middle of the assembly (parts copied, upload not completed).
    let mid = env
        .cmd(&["resume", &id])
        .envs(c.orchestrator_env())
        .env("HELIOS_FAILPOINTS", "mid-assembly")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&mid.stderr);
    assert_eq!(mid.status.signal(), Some(9), "{log}");
    // Wrong bytes are caught while the parts are made (the copied part's ETag, the worker
    // joining the small ones); chunk 5's hash and size now agree with the store, and its
    // frames are checked in the downloaded output, which the crash came before.
    assert!(log.contains("segment of chunk 1 rejected"), "{log}");
    assert!(log.contains("segment of chunk 4 rejected"), "{log}");
    assert!(!log.contains("segment of chunk 5 rejected"), "{log}");
    assert!(!env.path("out.mp4").exists());
    // No output yet, one unfinished upload.
    let objects = sizes(&c, "lies", "p/jobs/");
    assert!(
        !objects.iter().any(|(k, _)| k.ends_with("output.mp4")),
        "{objects:?}"
    );
    assert_eq!(open_uploads(&c, "lies"), 1);
    let attempts_before: Vec<u64> = env.attempts(&id);

    let last = env
        .cmd(&["resume", &id])
        .envs(c.orchestrator_env())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&last.stderr);
    assert!(last.status.success(), "{log}");
    assert!(log.contains("segment of chunk 5 rejected"), "{log}");
    assert_eq!(env.status(&id)["state"], "succeeded");
    // The output that held chunk 5's misplaced frames never reached out.mp4, and its
    // check left no file behind.
    assert_eq!(env.files_like("out.mp4"), vec!["out.mp4".to_string()]);
    assert_eq!(
        open_uploads(&c, "lies"),
        0,
        "the abandoned upload was aborted"
    );
    let attempts_after: Vec<u64> = env.attempts(&id);
    // After the crash only chunk 5, found lying in the downloaded output, was rendered
    // again.
    let mut expected = attempts_before.clone();
    expected[5] += 1;
    assert_eq!(
        attempts_after, expected,
        "nothing but chunk 5 was rendered again after the crash"
    );

    let local_env = Env::new();
    local_env.ok(&with_renderer(&render_args("local.mp4", &[]), &r));
    assert_eq!(
        framemd5(&env.path("out.mp4")),
        framemd5(&local_env.path("local.mp4"))
    );
    drop(c.workers);
}

#[test]
fn no_download_leaves_the_output_in_the_bucket_behind_a_presigned_url() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cloud("keep");
    let env = Env::new();
    let r = ffmpeg_renderer();
    let mut args = vec![
        "render",
        "--no-download",
        "--frames",
        "0..24",
        "--size",
        "64x64",
        "--chunks",
        "3",
        "--preset",
        "ultrafast",
    ];
    args.extend(c.flags("s3://keep/x"));
    let out = env.ok_with_env(&with_renderer(&args, &r), c.orchestrator_env());
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let id = env.only_job();
    assert!(
        url.contains(&format!("/keep/x/jobs/{id}/output.mp4")),
        "{url}"
    );
    // Nothing was downloaded: what the orchestrator received is fragment headers and small
    // answers, far less than the output.
    let objects = sizes(&c, "keep", "x/jobs/");
    let output = objects
        .iter()
        .find(|(k, _)| k.ends_with("/output.mp4"))
        .unwrap()
        .1;
    assert!(
        c.proxy.received.load(Ordering::SeqCst) < output,
        "{objects:?}"
    );
    // The presigned URL serves the output to anyone holding it.
    let fetched = env.path("fetched.mp4");
    let got = std::process::Command::new(peers_bin().join("python"))
        .args([
            "-c",
            "import sys, urllib.request; open(sys.argv[2], 'wb').write(urllib.request.urlopen(sys.argv[1]).read())",
            &url,
            fetched.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), output);
    assert_eq!(probe_stream(&fetched).0, 24);
    drop(c.workers);
}
