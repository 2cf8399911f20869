//! Fonts known at plan time and verified at the worker: the planner lists the fonts the
//! page's text renders with (family requested → platform font, web font or the machine's,
//! with the machine font's file hash), records them in the spec, names a family that is
//! missing, and `--strict-fonts` refuses it; a worker whose fontconfig has other fonts fails
//! its chunk, naming the family, instead of rendering it.

mod common;

use common::*;

fn page(env: &Env, name: &str, css: &str, font_file: bool) -> String {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    if font_file {
        std::fs::copy(
            "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
            dir.join("brand.ttf"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("index.html"),
        format!(
            "<!doctype html><html><head><style>{css}</style></head><body><h1>Title</h1><p>Body text</p></body></html>"
        ),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

#[test]
fn a_missing_family_is_named_at_plan_time_and_strict_fonts_refuses_it() {
    let env = Env::new();
    let comp = page(
        &env,
        "missing",
        "h1 { font-family: 'No Such Family', sans-serif; } p { font-family: 'DejaVu Serif'; }",
        false,
    );
    let out = env.ok(&["plan", &comp, "--emit", "spec.json", "--frames", "0..10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("font family 'No Such Family' is not available"),
        "{err}"
    );
    assert!(!err.contains("'DejaVu Serif' is not available"), "{err}");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("spec.json")).unwrap()).unwrap();
    let fonts = spec["composition"]["fonts"].as_array().unwrap();
    let serif = fonts
        .iter()
        .find(|f| f["requested"].as_str().unwrap().contains("DejaVu Serif"))
        .unwrap_or_else(|| panic!("{fonts:?}"));
    assert_eq!(serif["platform"], "DejaVu Serif");
    assert!(fonts
        .iter()
        .any(|f| f["requested"].as_str().unwrap().contains("No Such Family")));

    let r = env.run(&[
        "render",
        &comp,
        "-o",
        "x.mp4",
        "--frames",
        "0..10",
        "--strict-fonts",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("--strict-fonts") && err.contains("'No Such Family'"),
        "{err}"
    );
    assert!(!env.path("x.mp4").exists());
}

#[test]
fn a_web_font_from_the_bundle_is_recorded_as_one_and_passes_strict_fonts() {
    let env = Env::new();
    let comp = page(
        &env,
        "web",
        "@font-face { font-family: 'Brand'; src: url('brand.ttf'); } body { font-family: 'Brand', serif; }",
        true,
    );
    env.ok(&[
        "plan",
        &comp,
        "--emit",
        "spec.json",
        "--frames",
        "0..10",
        "--strict-fonts",
    ]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("spec.json")).unwrap()).unwrap();
    let fonts = spec["composition"]["fonts"].as_array().unwrap();
    assert!(
        fonts
            .iter()
            .all(|f| f["web"] == true && f["requested"].as_str().unwrap().contains("Brand")),
        "{fonts:?}"
    );
}

#[test]
fn a_worker_with_other_fonts_fails_its_chunk_naming_the_family() {
    let env = Env::new();
    let comp = page(
        &env,
        "serif",
        "body { font-family: 'DejaVu Serif'; }",
        false,
    );
    env.ok(&[
        "plan",
        &comp,
        "--emit",
        "spec.json",
        "--frames",
        "0..6",
        "--chunks",
        "2",
    ]);
    // A fontconfig with one font only: what a worker image without the fonts would have.
    let fonts = env.path("one-font");
    std::fs::create_dir_all(&fonts).unwrap();
    std::fs::copy(
        "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
        fonts.join("LiberationMono-Regular.ttf"),
    )
    .unwrap();
    let conf = env.path("fonts.conf");
    std::fs::write(
        &conf,
        format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE fontconfig SYSTEM \"fonts.dtd\">\n<fontconfig><dir>{}</dir><cachedir>{}</cachedir></fontconfig>\n",
            fonts.display(),
            env.path("fc-cache").display()
        ),
    )
    .unwrap();
    let r = env
        .cmd(&["run", "spec.json", "-o", "x.mp4"])
        .env("FONTCONFIG_FILE", &conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(
        err.contains("'DejaVu Serif'") && err.contains("worker"),
        "{err}"
    );
    let id = env.only_job();
    assert_eq!(env.attempts(&id)[0], 1, "fatal: no retries; {err}");
    assert!(!env.path("x.mp4").exists());
    // With the machine's own fonts the same spec renders.
    env.ok(&["run", "spec.json", "-o", "y.mp4"]);
}
