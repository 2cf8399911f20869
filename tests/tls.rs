//! Every HTTPS client runs on one TLS stack (rustls with ring) and checks certificates
//! against the system's trust store: a render whose storage is S3 over HTTPS (moto with a
//! certificate from a test authority) goes through object_store's client and the AWS
//! SDK's, doctor's STS call through the SDK; without the authority in the trust store the
//! same render fails, saying why.

mod common;

use common::peers::*;
use common::*;

fn https_env(moto: &Peer, ca: Option<&TestCa>) -> Vec<(&'static str, String)> {
    let mut v = s3_env(moto);
    v.push(("AWS_ENDPOINT_URL_STS", moto.endpoint.clone()));
    // Where rustls' native roots come from (rustls-native-certs reads it).
    if let Some(ca) = ca {
        v.push(("SSL_CERT_FILE", ca.ca.display().to_string()));
    } else {
        v.push(("SSL_CERT_FILE", "/dev/null".into()));
    }
    v
}

#[test]
fn s3_over_https_is_trusted_through_the_system_store_and_refused_without_it() {
    let ca = TestCa::new();
    let moto = moto_https("tls-renders", &ca);
    assert!(moto.endpoint.starts_with("https://"), "{}", moto.endpoint);
    let r = ffmpeg_renderer();

    // Trusted: the render's segments and output travel through the bucket over HTTPS.
    let env = Env::new();
    let args = render_args(
        "out.mp4",
        "0..24",
        "3",
        &["--storage", "s3://tls-renders/t"],
    );
    env.ok_with_env(&with_renderer(&args, &r), https_env(&moto, Some(&ca)));
    let id = env.only_job();
    let keys = boto3(
        &moto,
        "tls-renders",
        "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=B).get('Contents', [])))",
    );
    assert!(
        keys.lines().any(|k| k == format!("t/jobs/{id}/output.mp4")),
        "{keys}"
    );
    assert_eq!(probe_stream(&env.path("out.mp4")).0, 24);

    // doctor's identity check is the SDK's STS client over the same stack.
    let out = env
        .cmd(&["--json", "doctor", "--storage", "s3://tls-renders/t"])
        .envs(https_env(&moto, Some(&ca)))
        .output()
        .unwrap();
    let checks = json_lines(&out.stdout);
    let who = named(&checks, "aws credentials");
    assert_eq!(who["ok"], true, "{checks:?}");
    assert!(
        who["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("123456789012"),
        "{who}"
    );
    assert_eq!(named(&checks, "storage")["ok"], true, "{checks:?}");

    // Untrusted: the certificate's authority is not in the store, so nothing is sent.
    let env = Env::new();
    let args = render_args(
        "out.mp4",
        "0..24",
        "3",
        &["--storage", "s3://tls-renders/u"],
    );
    let out = env
        .cmd(&with_renderer(&args, &r))
        .envs(https_env(&moto, None))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(
        err.contains("hint: ") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
    assert!(!env.path("out.mp4").exists());
}
