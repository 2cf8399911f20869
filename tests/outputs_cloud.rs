//! Outputs through the cloud peers: a still and a GIF (its palette task included) rendered
//! by `helios-infra worker lambda` behind cargo-lambda's Invoke/Runtime API emulator with
//! storage in S3 (moto) equal the local ones; an image sequence left in S3 is placed inside
//! the bucket, and an image whose bytes were changed there is found and rendered again.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::peers::*;
use common::*;

const LAMBDA: [&str; 8] = [
    "--storage",
    "s3://outputs/p",
    "--adapter",
    "lambda",
    "--function",
    "helios-infra",
    "--invoke-timeout",
    "120",
];

#[test]
fn a_still_and_a_gif_on_lambda_with_s3_equal_local_ones() {
    let s3 = moto("outputs");
    let emulator = lambda_emulator();
    let vars = lambda_env(&s3, &emulator.endpoint);
    let _workers: Vec<_> = (0..2)
        .map(|_| lambda_worker(&emulator, "helios-infra", &vars))
        .collect();
    let env = Env::new();
    let comp = example("overlay");
    let on_lambda = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&LAMBDA);
        let out = env
            .cmd(&a)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert_ok(&out);
    };
    on_lambda(&[
        "still",
        &comp,
        "-o",
        "lambda.png",
        "--frame",
        "7",
        "--size",
        "640x240",
        "--transparent",
    ]);
    env.ok(&[
        "still",
        &comp,
        "-o",
        "local.png",
        "--frame",
        "7",
        "--size",
        "640x240",
        "--transparent",
    ]);
    let (a, b) = (
        decode_rgba(&env.path("lambda.png"), &[]),
        decode_rgba(&env.path("local.png"), &[]),
    );
    assert_eq!(a.len(), 640 * 240 * 4);
    assert!(a == b, "the Lambda still differs from the local one");

    let gif = [
        "--frames",
        "0..24",
        "--size",
        "640x240",
        "--chunks",
        "2",
        "--concurrency",
        "2",
    ];
    let mut args = vec!["render", comp.as_str(), "-o", "lambda.gif"];
    args.extend_from_slice(&gif);
    on_lambda(&args);
    let mut args = vec!["render", comp.as_str(), "-o", "local.gif"];
    args.extend_from_slice(&gif);
    env.ok(&args);
    let (a, b) = (
        decode_rgba(&env.path("lambda.gif"), &[]),
        decode_rgba(&env.path("local.gif"), &[]),
    );
    assert_eq!(a.len(), 24 * 640 * 240 * 4);
    assert!(a == b, "the Lambda GIF differs from the local one");
    let st = env.status(&env.status_ids()[2]);
    assert_eq!(st["adapter"], "lambda");
    // The palette task ran on Lambda and its palette is in the bucket.
    let listed = boto3(
        &s3,
        "outputs",
        "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=B, Prefix='p/jobs/')['Contents']))",
    );
    let id = st["id"].as_str().unwrap();
    assert!(
        listed.contains(&format!("p/jobs/{id}/palette.png")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("p/jobs/{id}/output.gif")),
        "{listed}"
    );
}

#[test]
fn an_image_sequence_left_in_s3_is_placed_in_the_bucket_and_lies_are_caught() {
    let s3 = moto("frames");
    let env = Env::new();
    let vars = s3_env(&s3);
    let args = [
        "render",
        &example("overlay"),
        "-o",
        "seq/%05d.png",
        "--no-download",
        "--frames",
        "5..25",
        "--size",
        "640x240",
        "--chunks",
        "2",
        "--storage",
        "s3://frames/p",
    ];
    let crashed = env
        .cmd(&args)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env("HELIOS_FAILPOINTS", "before-stitch")
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    let id = env.only_job();
    // Frame 20 (chunk 1) changes in the bucket: same size, one byte flipped.
    let lie = format!("p/jobs/{id}/attempts/1/1/00020.png");
    boto3(
        &s3,
        "frames",
        &format!(
            "b = bytearray(s3.get_object(Bucket=B, Key='{lie}')['Body'].read())\nb[-20] ^= 0xff\ns3.put_object(Bucket=B, Key='{lie}', Body=bytes(b))"
        ),
    );
    let out = env
        .cmd(&["resume", &id])
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_ok(&out);
    assert_eq!(env.attempts(&id), vec![1, 2], "chunk 1 was rendered again");
    assert!(!env.path("seq").exists(), "nothing was downloaded");
    let listed = boto3(
        &s3,
        "frames",
        &format!(
            "print('\\n'.join(o['Key'].rsplit('/', 1)[1] for o in s3.list_objects_v2(Bucket=B, Prefix='p/jobs/{id}/frames/')['Contents']))"
        ),
    );
    let names: Vec<&str> = listed.lines().collect();
    let want: Vec<String> = (5..25).map(|f| format!("{f:05}.png")).collect();
    assert_eq!(names, want);
    // The placed frame 20 is the re-rendered one: it equals frame 20 rendered locally.
    let placed = boto3(
        &s3,
        "frames",
        &format!(
            "import hashlib\nprint(hashlib.sha256(s3.get_object(Bucket=B, Key='p/jobs/{id}/frames/00020.png')['Body'].read()).hexdigest())"
        ),
    );
    env.ok(&[
        "still",
        &example("overlay"),
        "-o",
        "f20.png",
        "--frame",
        "20",
        "--size",
        "640x240",
    ]);
    let local = sha256_file(&env.path("f20.png"));
    assert_eq!(placed.trim(), local);
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn an_image_sequence_left_in_cloud_storage_is_copied_in_the_bucket() {
    let gcs = fake_gcs("stills");
    let env = Env::new();
    let vars = [("STORAGE_EMULATOR_HOST", gcs.endpoint.clone())];
    env.ok_with_env(
        &[
            "render",
            &example("overlay"),
            "-o",
            "seq/f%d.jpg",
            "--no-download",
            "--frames",
            "3..9",
            "--size",
            "640x240",
            "--chunks",
            "2",
            "--storage",
            "gs://stills/team",
        ],
        vars.iter().map(|(k, v)| (k, v)),
    );
    let id = env.only_job();
    let placed: Vec<String> = gcs_objects(&gcs, "stills", &format!("team/jobs/{id}/frames/"))
        .iter()
        .map(|o| {
            o["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut placed = placed;
    placed.sort();
    let mut want: Vec<String> = (3..9).map(|f| format!("f{f}.jpg")).collect();
    want.sort();
    assert_eq!(placed, want);
    assert!(!env.path("seq").exists());
    let st = env.status(&id);
    assert_eq!(st["assembly"], "bucket", "{st}");
    assert_eq!(st["output_kind"], "images", "{st}");
}
